//! End-to-end tests over real pcscd + vpcd with OpenSC as an outside client.
//!
//! Empty until the software-card issue brings the first end-to-end tests.
