// What the batch run adds to the pipeline's message types: the sampling side of `JobParameters` (built
// from `paligemma run`'s options, turned back into the Sampler's parameters on the last stage), a
// record's error as a result message carries it, and the errors that end a run.
import Foundation
import PaliBatch
import PaliGeneration
import PaliPipeline

extension JobParameters {
    public init(maxNewTokens: Int, sampling: SamplingParameters, beams: Int = 1) {
        self.init(maxNewTokens: maxNewTokens, temperature: sampling.temperature, topK: sampling.topK,
                  topP: sampling.topP, seed: sampling.seed, beams: beams)
    }

    public var sampling: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
    }

    /// A job's sampling seed: `base` mixed with the job id (FNV-1a), so every job draws its own
    /// reproducible stream whatever it is batched with, and `generate --seed` with this value
    /// reproduces the job alone. Greedy decoding ignores it.
    public static func seed(base: UInt64, id: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return base ^ hash
    }
}

/// Errors of the batch run that are not a single record's fault: they end the job.
public enum RunError: Error, CustomStringConvertible {
    case internalMessage(String)
    case setup(String)
    case peer(String)
    /// This rank has not heard from rank `peerRank` (`peer`: described with its role and host,
    /// `RankContext.describe`) for `seconds`.
    case silentPeer(peerRank: Int, peer: String, seconds: Double)
    /// A worker (described with its role and host) reported that it cannot go on (`FailureMessage`).
    case workerFailed(worker: String, reason: String)
    /// Another thread of this rank has been inside one MPI call for over `seconds` (`TransportError.stuck`);
    /// `pendingSendsTo`: the peers (described) of sends not complete then.
    case stuckInMPI(seconds: Double, pendingSendsTo: [String])

    public var description: String {
        switch self {
        case .internalMessage(let text): return "internal error: \(text); please report it with the command line"
        case .setup(let text): return text
        case .peer(let text): return text
        case .silentPeer(_, let peer, let seconds):
            return "\(peer) has been silent for \(Int(seconds.rounded())) s; it is hung or dead, or the network "
                + "between the two hosts is cut. Check that host, its link and its log; the job is ended so the rest "
                + "does not wait forever (rerun the same command to resume)."
        case .workerFailed(let worker, let reason):
            return "\(worker) cannot go on: \(reason)"
        case .stuckInMPI(let seconds, let peers):
            return "another thread of this rank has been inside one MPI call for over \(Int(seconds)) s: Open MPI is stuck, "
                + "typically on a peer that is gone or cut off"
                + (peers.isEmpty ? "" : " (sends to \(peers.joined(separator: ", ")) are not complete)")
                + "; mpirun's output names a lost host. Check it and rerun the same command to resume."
        }
    }
}

extension ResultMessage.Failure {
    init(_ error: RecordError) { self.init(kind: error.kind, message: error.message) }
}
