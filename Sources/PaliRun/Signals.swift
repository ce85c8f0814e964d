// SIGTERM, SIGINT, SIGUSR1 (Slurm's warning before a time limit), SIGHUP (the terminal or ssh session
// closed) and SIGQUIT (Ctrl-\) ask the coordinator to stop: it completes the current shard, tells the
// other ranks to stop, writes stats.json and exits 128 + signal so that a requeue resumes the job.
// SIGQUIT's default action (a core dump; the Swift runtime's 30-second backtrace) would lose the shard
// being written and say nothing useful about a batch job, so it is one more polite stop here. Worker ranks record the signal but do not act on it: launchers
// forward signals to every rank, and a worker that exited on its own would make mpirun kill the
// coordinator before it has written the shard.
//
// Mechanism. `start()` runs first thing in `BatchRun.main`, on the main thread, before MPI_Init and
// before any thread of ours exists:
//   1. it blocks the stop signals in the calling thread (pthread_sigmask); every thread created later
//      (MPI's, OpenBLAS's when it grows its pool, the ranks' and communication threads) inherits the mask;
//   2. it starts one thread that loops on sigwait() and records the first signal under a lock: a
//      process-directed signal is delivered to that thread, whatever the other threads are doing;
//   3. for threads that existed before (OpenBLAS starts its pool when the library loads, before main)
//      and so do not block the signals, it installs a handler that only forwards the signal to the
//      waiting thread with pthread_kill (async-signal-safe), so the signal is never lost or fatal.
// No dispatch source, no SIG_IGN: a signal cannot be discarded by a thread that dequeued it first.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum StopSignal {
    static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGQUIT]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var received: Int32 = 0
    nonisolated(unsafe) private static var started = false
    /// The signals of `signals` this process waits for (those it was not started with ignored).
    nonisolated(unsafe) private static var handled: [Int32] = []
    /// The sigwait thread; read by the forwarding handler (set before the handler is installed).
    nonisolated(unsafe) fileprivate static var waiter: pthread_t?

    /// The signal that asked the job to stop, 0 if none.
    static var pending: Int32 {
        lock.lock(); defer { lock.unlock() }
        return received
    }

    /// Blocks the stop signals (`signals`) in the calling thread and starts the thread that waits for
    /// them. Call it on the main thread before any other thread is started. Idempotent.
    static func start() {
        lock.lock()
        if started { lock.unlock(); return }
        started = true
        lock.unlock()

        // A signal the process was started with ignored (SIGINT of a job started with `&` by a script)
        // stays ignored, as for any program; the others are caught from now on.
        handled = signals.filter { !isIgnored($0) }
        guard !handled.isEmpty else { return }
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)

        let ready = DispatchSemaphore(value: 0)
        let thread = Thread {
            waiter = pthread_self()
            ready.signal()
            var set = signalSet()
            while true {
                var signal: Int32 = 0
                guard sigwait(&set, &signal) == 0 else { continue }
                record(signal)
            }
        }
        thread.name = "paligemma-signals"
        thread.stackSize = 1 << 18
        thread.start()
        ready.wait()

        for signal in handled {
            var action = sigaction()
            #if os(Linux)
            action.__sigaction_handler.sa_handler = forwardToWaiter
            #else
            action.__sigaction_u.__sa_handler = forwardToWaiter
            #endif
            action.sa_flags = SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }

    /// Records `signal`: the first one is the one that stops the job; repeats change nothing.
    static func record(_ signal: Int32) {
        lock.lock()
        if received == 0 { received = signal }
        lock.unlock()
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        return set
    }

    /// Whether `signal`'s disposition is SIG_IGN.
    private static func isIgnored(_ signal: Int32) -> Bool {
        var current = sigaction()
        guard sigaction(signal, nil, &current) == 0 else { return false }
        #if os(Linux)
        let handler = current.__sigaction_handler.sa_handler
        #else
        let handler = current.__sigaction_u.__sa_handler
        #endif
        return unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        case SIGHUP: return "SIGHUP"
        case SIGQUIT: return "SIGQUIT"
        default: return "signal \(sig)"
        }
    }
}

/// Runs in a thread that did not block the stop signals (one started before `StopSignal.start`):
/// hands the signal to the sigwait thread, where it is pending until sigwait takes it.
private let forwardToWaiter: @convention(c) (Int32) -> Void = { signal in
    if let waiter = StopSignal.waiter { _ = pthread_kill(waiter, signal) }
}
