//! GlobalPlatform SCP03 (Card Specification 2.3 Amendment D), host and card
//! halves. Pure: no I/O.
