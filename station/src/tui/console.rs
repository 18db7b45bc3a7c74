//! The console's runtime: a [`Report`] that forwards events to a thread
//! which owns the terminal (raw mode, alternate screen), applies events
//! and key presses to a [`ConsoleState`] and redraws on each and on a
//! tick. The terminal is given back as it was when the console closes,
//! when drawing fails, and on a panic in any thread (a panic hook; the
//! console then stops drawing and the run goes on to its end, Ctrl-C
//! working as a signal again).

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossterm::event::{self as term_event, Event as TermEvent, KeyEvent};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;
use tokio::sync::watch;

use super::action::{action_for, Command};
use super::state::ConsoleState;
use super::widgets::Screen;
use crate::control::Stop;
use crate::report::{Event, Report};

/// How the console behaves.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleOptions {
    /// Keep the final screen until a key is pressed.
    pub wait_for_key: bool,
    /// How often the screen is redrawn without news (elapsed time,
    /// countdowns).
    pub tick: Duration,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            wait_for_key: true,
            tick: Duration::from_millis(250),
        }
    }
}

/// What the console thread hears.
enum Input {
    Event(Box<Event>),
    Key(KeyEvent),
    /// The terminal changed size (the next draw follows it).
    Resize,
    /// No more keys can be read.
    KeysGone,
    /// The run is over (its summary came before).
    RunOver,
    /// Close now, without waiting for a key.
    Close,
}

/// The [`Report`] of a console: sends each event to the console thread.
pub struct ConsoleReport {
    tx: Sender<Input>,
}

impl Report for ConsoleReport {
    fn event(&self, event: &Event) {
        let _ = self.tx.send(Input::Event(Box::new(event.clone())));
    }

    fn finish(&self) {
        let _ = self.tx.send(Input::RunOver);
    }
}

/// Asks the run to stop as `wanted` says, never less than it was asked
/// already (a later "drain" does not undo an "abort"). Whether it changed.
pub fn request_stop(stop: &watch::Sender<Stop>, wanted: Stop) -> bool {
    fn rank(s: Stop) -> u8 {
        match s {
            Stop::Run => 0,
            Stop::Drain => 1,
            Stop::Abort => 2,
        }
    }
    stop.send_if_modified(|s| {
        if rank(wanted) > rank(*s) {
            *s = wanted;
            true
        } else {
            false
        }
    })
}

/// Whether this process has the terminal in raw mode on the alternate
/// screen (set by [`TerminalGuard::enter`], cleared by [`restore`]).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Gives the terminal back: normal mode, normal screen, cursor shown.
/// Once, whoever calls it first (the console closing, a panic).
fn restore() -> io::Result<()> {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let raw = terminal::disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    raw.and(screen)
}

/// Raw mode and the alternate screen while it lives.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let _ = restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = TerminalGuard;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Err(e) = restore() {
            eprintln!("station: could not restore the terminal: {e}");
        }
    }
}

/// A running console.
pub struct Console {
    report: Arc<ConsoleReport>,
    tx: Sender<Input>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Console {
    /// The report to give the run.
    pub fn report(&self) -> Arc<dyn Report> {
        self.report.clone()
    }

    /// The run is over: waits until the console closes (a key, unless
    /// told not to wait) and the terminal is back as it was.
    pub fn wait(mut self) -> io::Result<()> {
        let _ = self.tx.send(Input::RunOver);
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the console thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Console {
    /// Dropped without [`Console::wait`]: close at once.
    fn drop(&mut self) {
        let _ = self.tx.send(Input::Close);
        let _ = self.join();
    }
}

/// Takes the terminal (standard output must be one) and starts the
/// console. Key presses go through [`action_for`] and
/// [`ConsoleState::handle`]; a stop they ask for is sent on `stop` (see
/// [`request_stop`]).
pub fn run_console(options: ConsoleOptions, stop: watch::Sender<Stop>) -> io::Result<Console> {
    if !io::stdout().is_terminal() {
        return Err(io::Error::other("standard output is not a terminal"));
    }
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let (tx, rx) = mpsc::channel();
    let keys_quit = Arc::new(AtomicBool::new(false));
    let keys = {
        let tx = tx.clone();
        let quit = keys_quit.clone();
        std::thread::Builder::new()
            .name("station-console-keys".into())
            .spawn(move || read_keys(&tx, &quit))?
    };
    let thread = std::thread::Builder::new()
        .name("station-console".into())
        .spawn(move || {
            let started = Instant::now();
            let r = console_loop(
                &mut terminal,
                &rx,
                &stop,
                options,
                || started.elapsed(),
                || ACTIVE.load(Ordering::SeqCst),
            );
            keys_quit.store(true, Ordering::SeqCst);
            let _ = keys.join();
            drop(terminal);
            drop(guard);
            r
        })?;
    Ok(Console {
        report: Arc::new(ConsoleReport { tx: tx.clone() }),
        tx,
        thread: Some(thread),
    })
}

/// Reads keys until told to quit (looking every 100 ms).
fn read_keys(tx: &Sender<Input>, quit: &AtomicBool) {
    while !quit.load(Ordering::SeqCst) {
        let input = match term_event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => match term_event::read() {
                Ok(TermEvent::Key(k)) => Input::Key(k),
                Ok(TermEvent::Resize(..)) => Input::Resize,
                Ok(_) => continue,
                Err(_) => Input::KeysGone,
            },
            Err(_) => Input::KeysGone,
        };
        let gone = matches!(input, Input::KeysGone);
        if tx.send(input).is_err() || gone {
            return;
        }
    }
}

/// Draws and listens until the console closes. `clock` is the console's
/// time (since it started); `live` whether the terminal is still the
/// console's (a panic gives it back).
fn console_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    rx: &Receiver<Input>,
    stop: &watch::Sender<Stop>,
    options: ConsoleOptions,
    clock: impl Fn() -> Duration,
    live: impl Fn() -> bool,
) -> io::Result<()> {
    let mut state = ConsoleState::new();
    let mut run_over = false;
    let mut keys = true;
    let mut leave = false;
    loop {
        if !live() {
            return Ok(());
        }
        state.set_clock(clock());
        terminal.draw(|f| f.render_widget(Screen(&state), f.area()))?;
        let finished = state.is_finished();
        let waits = options.wait_for_key && keys && finished;
        if leave || ((finished || run_over) && !waits) {
            return Ok(());
        }
        let mut inputs = Vec::new();
        match rx.recv_timeout(options.tick) {
            Ok(i) => inputs.push(i),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => run_over = true,
        }
        inputs.extend(rx.try_iter());
        for input in inputs {
            match input {
                Input::Event(e) => {
                    state.set_clock(clock());
                    state.apply(&e);
                }
                Input::Key(k) if !leave => match state.handle(action_for(k)) {
                    Some(Command::Stop(s)) => {
                        request_stop(stop, s);
                    }
                    Some(Command::Exit) => leave = true,
                    None => {}
                },
                Input::Key(_) | Input::Resize => {}
                Input::KeysGone => keys = false,
                Input::RunOver => run_over = true,
                Input::Close => leave = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RunEnd, Summary};
    use crossterm::event::{KeyCode, KeyModifiers};
    use ratatui::backend::TestBackend;

    fn key(c: char) -> Input {
        Input::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn summary() -> Input {
        Input::Event(Box::new(Event::Summary(Summary {
            passed: 1,
            rejected: 0,
            round_trips_per_card: 2,
            cards_per_hour: 10,
            recovered: 0,
            end: RunEnd::JobDone,
        })))
    }

    fn run(inputs: Vec<Input>, options: ConsoleOptions) -> (watch::Receiver<Stop>, String) {
        let (tx, rx) = mpsc::channel();
        for i in inputs {
            tx.send(i).unwrap();
        }
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let options = ConsoleOptions {
            tick: Duration::from_millis(5),
            ..options
        };
        // Whatever is left keeps the channel open: the loop must end by
        // its inputs, not by the channel closing.
        let keep = tx.clone();
        console_loop(
            &mut terminal,
            &rx,
            &stop_tx,
            options,
            || Duration::from_secs(3),
            || true,
        )
        .unwrap();
        drop(keep);
        (stop_rx, terminal.backend().to_string())
    }

    #[test]
    fn quit_drains_then_aborts_and_the_final_screen_waits_for_a_key() {
        let (stop, screen) = run(
            vec![key('q'), key('q'), summary(), Input::RunOver, key('x')],
            ConsoleOptions::default(),
        );
        assert_eq!(*stop.borrow(), Stop::Abort);
        assert!(screen.contains("Finished"), "{screen}");
    }

    #[test]
    fn without_waiting_the_console_closes_with_the_summary() {
        let (stop, screen) = run(
            vec![summary()],
            ConsoleOptions {
                wait_for_key: false,
                ..ConsoleOptions::default()
            },
        );
        assert_eq!(*stop.borrow(), Stop::Run);
        assert!(screen.contains("passed 1"), "{screen}");
    }

    #[test]
    fn no_keys_no_waiting() {
        run(vec![summary(), Input::KeysGone], ConsoleOptions::default());
    }

    #[test]
    fn a_run_over_without_a_summary_closes_the_console() {
        run(vec![Input::RunOver], ConsoleOptions::default());
    }

    #[test]
    fn navigation_keys_keep_the_final_screen() {
        let (_, screen) = run(
            vec![summary(), key('?'), key('j'), Input::Close],
            ConsoleOptions::default(),
        );
        assert!(screen.contains("Help"), "{screen}");
    }

    #[test]
    fn a_stop_never_goes_back() {
        let (tx, rx) = watch::channel(Stop::Run);
        assert!(request_stop(&tx, Stop::Drain));
        assert!(!request_stop(&tx, Stop::Drain));
        assert!(request_stop(&tx, Stop::Abort));
        assert!(!request_stop(&tx, Stop::Drain));
        assert_eq!(*rx.borrow(), Stop::Abort);
    }
}
