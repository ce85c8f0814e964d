// The pipeline's only way to talk between ranks, and the module's error type.
//
// Two implementations share these semantics: `MPITransport` (Open MPI, one process per rank) and
// `LocalTransport` (one thread per rank in one process, for tests and np=1). The pipeline code is
// written against `Transport` alone, so the in-process runs exercise the same logic as mpirun runs.
import Foundation
import Logging

/// The transports' logger (the abort message every rank prints before the job ends).
let transportLogger = Logger(label: "paligemma")

/// A point-to-point message channel between the ranks of one job.
///
/// Semantics (both implementations):
/// - `send` is nonblocking: it returns once the message is queued. The transport owns the serialized
///   bytes until the send completes; the caller may reuse or drop its `Message` at once.
/// - Messages from one sender to one receiver arrive in the order they were sent (MPI's
///   non-overtaking rule). Nothing is promised about the order between different senders.
/// - `receive` takes a message from any source. `timeout: nil` waits forever, `0` only looks.
///   A timeout returns `nil`, so a silent peer cannot hang the caller: it decides what to do
///   (usually: check its `PeerMonitor` and abort the job naming the silent rank).
/// - `flush` waits until every send has completed (the receiver has the bytes or MPI buffered them).
/// - `abort` ends the whole job, not just this rank, with a message naming this rank.
public protocol Transport: AnyObject {
    /// This endpoint's rank, `0..<size`.
    var rank: Int { get }
    /// The number of ranks in the job.
    var size: Int { get }
    /// Queues `message` for `rank` and returns without waiting for the receiver.
    func send(_ message: Message, to rank: Int) throws
    /// The next message from any source, waiting up to `timeout` seconds (`nil`: forever).
    func receive(timeout: Double?) throws -> (source: Int, message: Message)?
    /// The next message from any source if one is already there; never waits.
    func poll() throws -> (source: Int, message: Message)?
    /// Waits until every message this endpoint sent has left its hands.
    func flush() throws
    /// Moves communication along without waiting (for a background thread while the owner computes).
    func progress() throws
    /// Ends the whole job (MPI_Abort) after printing `reason` with this rank's number and host to stderr.
    func abort(_ reason: String) -> Never
    /// The host rank `rank` runs on (its processor name, exchanged when the transport started), for
    /// messages that must say where a rank is; nil for a rank outside `0..<size`.
    func host(of rank: Int) -> String?
    /// Messages and bytes (wire-format size) sent and received so far, for stats.
    var counters: TransportCounters { get }
}

extension Transport {
    /// Moves communication along without waiting (see `MPITransport.progress`); in-process transports
    /// need nothing.
    public func progress() throws {}

    /// Every rank of an in-process transport runs on this host.
    public func host(of rank: Int) -> String? {
        (0..<size).contains(rank) ? HostName.current : nil
    }

    /// Sends a typed pipeline message.
    public func send(_ message: some PipelineMessage, to rank: Int) throws {
        try send(message.message, to: rank)
    }
}

/// This machine's host name (gethostname), as MPI_Get_processor_name gives it in Open MPI.
public enum HostName {
    public static let current: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        return String(cString: buffer)
    }()
}

/// Traffic counted by a transport; bytes are wire-format sizes (`WireFormat.encodedSize`).
public struct TransportCounters: Sendable, Equatable {
    public var messagesSent = 0
    public var bytesSent = 0
    public var messagesReceived = 0
    public var bytesReceived = 0
    public init() {}
}

/// The one error type of PaliPipeline: transport failures, malformed messages and layout plans.
/// Each case names the rank(s) involved, and its description says what to do next.
public enum TransportError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (MPI_ERRORS_RETURN is set on MPI_COMM_WORLD).
    /// `peer` and `tag` are the other rank and the message tag where the call had them.
    case mpi(call: String, code: Int32, rank: Int, peer: Int?, tag: Int?, message: String)
    /// MPI could not give the thread support the transport needs.
    case threadSupport(requested: Int32, provided: Int32)
    /// MPI was already finalized, or initialized by someone else in this process.
    case lifecycle(String)
    /// A message was addressed to a rank outside `0..<size`.
    case invalidRank(rank: Int, size: Int, from: Int)
    /// The bytes on the wire are not a well-formed message (bad magic/version/lengths/checksum).
    case corruptMessage(source: Int?, reason: String)
    /// A well-formed message whose fields do not fit its kind (wrong counts, bad UTF-8, wrong kind).
    case invalidMessage(kind: MessageKind, reason: String)
    /// The serialized message is over what one transfer can carry.
    case messageTooLarge(bytes: Int, limit: Int)
    /// An operation did not finish in time; `peers` are the ranks it was waiting on.
    case timeout(operation: String, rank: Int, peers: [Int], seconds: Double)
    /// A peer has not been heard from for `seconds` (see `PeerMonitor`).
    case peerSilent(rank: Int, peer: Int, seconds: Double)
    /// Another thread of `rank` has been inside one MPI call for over `seconds` (`MPITransport.stuckCallLimit`);
    /// `pendingSendsTo`: the peers of this rank's sends not yet complete then.
    case stuck(rank: Int, seconds: Double, pendingSendsTo: [Int])
    /// Another endpoint of a `LocalTransport` group aborted the job.
    case aborted(by: Int, reason: String)
    /// The world size cannot be split into coordinator + replicas as asked.
    case invalidLayout(String)
    /// A layer split (computed or given as an override) is not valid.
    case invalidStagePlan(String)

    public var description: String {
        switch self {
        case .mpi(let call, let code, let rank, let peer, let tag, let message):
            var text = "rank \(rank): \(call) failed with MPI error \(code) (\(message))"
            if let peer { text += ", peer rank \(peer)" }
            if let tag { text += ", tag \(tag)" }
            return text + "; check that every rank is alive and runs the same build (mpirun's output names the "
                + "rank that failed first)."
        case .threadSupport(let requested, let provided):
            return "MPI provides thread level \(provided) but the transport needs \(requested); use an Open MPI "
                + "built with thread support, or request .funneled and make every MPI call on one thread."
        case .lifecycle(let message):
            return "MPI lifecycle: \(message)"
        case .invalidRank(let rank, let size, let from):
            return "rank \(from): cannot send to rank \(rank): the job has ranks 0..<\(size); this is a layout bug "
                + "(check Layout.plan against the mpirun -np value)."
        case .corruptMessage(let source, let reason):
            let origin = source.map { "from rank \($0)" } ?? "on the wire"
            return "corrupt message \(origin): \(reason); every rank must run the same paligemma build "
                + "(wire format version \(WireFormat.version))."
        case .invalidMessage(let kind, let reason):
            return "invalid \(kind) message: \(reason); every rank must run the same paligemma build."
        case .messageTooLarge(let bytes, let limit):
            return "message of \(bytes) bytes is over the transfer limit of \(limit) bytes; use smaller "
                + "micro-batches."
        case .timeout(let operation, let rank, let peers, let seconds):
            return "rank \(rank): \(operation) did not finish within \(seconds) s waiting on rank(s) "
                + "\(peers.map(String.init).joined(separator: ", ")); check that those ranks are alive and "
                + "receiving."
        case .peerSilent(let rank, let peer, let seconds):
            return "rank \(rank): rank \(peer) has been silent for \(Int(seconds.rounded())) s; it is hung or "
                + "dead. Check its host and its log; the job is ended so the rest does not wait forever."
        case .stuck(let rank, let seconds, let peers):
            return "rank \(rank): another thread of this rank has been inside one MPI call for over \(Int(seconds)) s: Open MPI "
                + "is stuck, typically on a peer that is gone or cut off"
                + (peers.isEmpty ? "" : " (sends to rank(s) \(peers.map(String.init).joined(separator: ", ")) are not complete)")
                + "; mpirun's output names a lost host. The job is ended."
        case .aborted(let by, let reason):
            return "the job was aborted by rank \(by): \(reason)"
        case .invalidLayout(let message):
            return message
        case .invalidStagePlan(let message):
            return message
        }
    }
}
