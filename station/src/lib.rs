//! The card control system: it contacts cards and relays the keyserver's
//! scripts to them unchanged; it holds no key and knows no command.
//!
//! - [`readers`]: PC/SC readers through pcscd and `sim:N` in-process
//!   readers behind one abstraction ([`readers::ReaderSource`],
//!   [`readers::Reader`], [`readers::Card`]).
//! - [`relay`]: runs one script on one card, transparently; per-step time
//!   limits ([`relay::Watchdog`] runs a blocking card on its own thread).
//! - [`journal`]: the local journal of requests (sled, durable before a
//!   request leaves), which makes `station run` resumable.
//! - [`control`]: the control stream to the keyserver, one task per
//!   reader, one Perso stream per card, pass/reject accounting, recovery.
//! - [`report`]: events as JSON lines or progress lines, the summary.
//! - [`tui`]: the operator console (`station run --console`).
//! - [`cli`]: `station run`, `station readers`, `station journal`.
//!
//! Decisions the code follows:
//!
//! - A card goes to the pass bin only on a Result OK from the control
//!   stream for its request. Everything else that touched the card
//!   (failed Result, lost card, timeout, lost connection, Ctrl-C twice) is
//!   a reject; a card no command reached stays untouched.
//! - Releasing a binned PC/SC card disconnects it with power off: no
//!   secure channel stays open, and `vsc feeder` bins it by its state.
//! - A lost card (removed, no answer in time, reader failure) is reported
//!   to the keyserver with `card_removed` and the reason
//!   (`card_lost_reason`, `card_lost_detail`), which the keyserver puts in
//!   the card's void reason.
//! - A refused request is decided by the Result's `refusal`: no record
//!   left ends the run, a job the station may not run stops it, a busy
//!   keyserver (too many cards open for this station) is asked again.
//! - Requests closed without a Result (killed station, lost connection)
//!   are *unsettled*: the keyserver is asked again with the same request
//!   id as a `resume` request (lookup only: it never reserves a record);
//!   its recorded verdict is journaled and reported. A card it recorded as
//!   issued is announced as good (it stays counted rejected).

pub mod cli;
pub mod control;
pub mod journal;
pub mod readers;
pub mod relay;
pub mod report;
pub mod tui;
