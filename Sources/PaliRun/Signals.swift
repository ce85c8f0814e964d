// SIGTERM and SIGUSR1 (Slurm's warning before a time limit) ask the coordinator to stop: it completes
// the current shard, tells the other ranks to stop, and exits non-zero so a requeue resumes the job.
// Worker ranks ignore both signals: mpirun forwards them to every rank, and a worker that exited on
// its own would make mpirun kill the coordinator before it has written the shard.
import Foundation

enum StopSignal {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var received: Int32 = 0

    /// The signal that asked the job to stop, 0 if none.
    static var pending: Int32 {
        lock.lock(); defer { lock.unlock() }
        return received
    }

    /// Routes SIGTERM, SIGINT and SIGUSR1 to a dispatch queue that records the first one.
    static func install() {
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                lock.lock()
                if received == 0 { received = sig }
                lock.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Worker ranks: let the coordinator decide when to stop.
    static func ignore() {
        signal(SIGTERM, SIG_IGN)
        signal(SIGUSR1, SIG_IGN)
    }

    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(sig)"
        }
    }
}
