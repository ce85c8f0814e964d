// Which rank plays which role: the coordinator, then replicas of V vision ranks + S decoder stages.
//
//   rank 0                          coordinator
//   1 + r·(V+S) + i,   i < V        vision rank i of replica r
//   1 + r·(V+S) + V + s, s < S      decoder stage s of replica r
//
// so N = 1 + R·(V+S). A replica's ranks are contiguous, which keeps a replica on one node when
// mpirun fills nodes in order (--map-by slot) and hosts have a multiple of V+S slots.

/// What one rank does.
public enum Role: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Rank 0: reads the manifest, hands out jobs, writes results.
    case coordinator
    /// Vision rank `index` (0..<V) of replica `replica`: image → embeddings.
    case vision(replica: Int, index: Int)
    /// Decoder stage `index` (0..<S) of replica `replica`: a contiguous range of layers.
    case stage(replica: Int, index: Int)

    public var description: String {
        switch self {
        case .coordinator: return "coordinator"
        case .vision(let replica, let index): return "vision \(index) of replica \(replica)"
        case .stage(let replica, let index): return "stage \(index) of replica \(replica)"
        }
    }
}

/// The split of a job's ranks into the coordinator and R replicas of V vision ranks + S stages.
public struct Layout: Equatable, Sendable, CustomStringConvertible {
    /// Ranks in the job (the transport's size): 1 + replicas · (visionRanks + stages).
    public let worldSize: Int
    /// Vision ranks per replica (V).
    public let visionRanks: Int
    /// Decoder stages per replica (S).
    public let stages: Int
    /// Replicas (R).
    public let replicas: Int

    /// Ranks per replica (V + S).
    public var ranksPerReplica: Int { visionRanks + stages }

    /// A layout with exactly these counts.
    public init(visionRanks: Int, stages: Int, replicas: Int) throws {
        guard visionRanks >= 1, stages >= 1, replicas >= 1 else {
            throw TransportError.invalidLayout("a layout needs at least 1 vision rank, 1 stage and 1 replica "
                                               + "(got V=\(visionRanks), S=\(stages), R=\(replicas))")
        }
        self.visionRanks = visionRanks
        self.stages = stages
        self.replicas = replicas
        self.worldSize = 1 + replicas * (visionRanks + stages)
    }

    /// One replica in one process (np=1 through `LocalTransport`): the group has 1 + V + S endpoints.
    public static func inProcess(visionRanks: Int = 1, stages: Int = 1) throws -> Layout {
        try Layout(visionRanks: visionRanks, stages: stages, replicas: 1)
    }

    /// The layout for a job of `worldSize` ranks (mpirun -np), filling in what is not given.
    ///
    /// The rule: V defaults to 1 (vision is ~1/5 of a job's work). S defaults to the smallest S ≥ 1 with
    /// (V + S) dividing N − 1, which gives the most replicas: on one machine, independent replicas beat
    /// deeper pipelines (no bubbles, no hand-offs); stages are for when one rank cannot hold the decoder.
    /// Odd N gives V = S = 1 and R = (N − 1)/2. When S is given and V is not, V = 1 must fit.
    /// `worldSize == 1` means every role in one process: the result is `inProcess(V, S)`.
    ///
    /// `maxStages` (the decoder's layer count: a stage holds at least one layer) caps the default S.
    /// When no S ≤ `maxStages` fits with V = 1 (N − 1 prime, e.g. N = 6 → S = 4, on a decoder of fewer
    /// layers) and V was not given, the spare ranks become vision ranks: S = `maxStages` and
    /// V = d − S for the smallest divisor d ≥ 2 of N − 1 (the most replicas), e.g. N = 6 with 2 layers
    /// gives V = 3, S = 2, R = 1. With V given, such an N is an error naming the sizes that fit. An S
    /// given explicitly is not capped here (`StagePlan` refuses more stages than layers).
    ///
    /// Throws `.invalidLayout` before any work when N cannot be split as asked, naming the N that fit.
    public static func plan(worldSize: Int, visionRanks: Int? = nil, stages: Int? = nil,
                            maxStages: Int? = nil) throws -> Layout {
        if let visionRanks, visionRanks < 1 {
            throw TransportError.invalidLayout("--vision-ranks must be at least 1 (got \(visionRanks))")
        }
        if let stages, stages < 1 {
            throw TransportError.invalidLayout("--stages must be at least 1 (got \(stages))")
        }
        let v = visionRanks ?? 1
        if worldSize == 1 { return try inProcess(visionRanks: v, stages: stages ?? 1) }
        guard worldSize >= 3 else {
            throw TransportError.invalidLayout("mpirun -np \(worldSize) cannot hold a coordinator plus a vision "
                                               + "rank and a decoder stage: use -np 1 (every role in one process) "
                                               + "or -np 3 or more")
        }
        let workers = worldSize - 1
        if let stages {
            guard workers % (v + stages) == 0 else {
                throw misfit(worldSize: worldSize, visionRanks: v, stages: stages,
                             hint: visionRanks == nil ? "or give --vision-ranks" : "or change --stages/--vision-ranks")
            }
            return try Layout(visionRanks: v, stages: stages, replicas: workers / (v + stages))
        }
        guard v + 1 <= workers else {
            throw TransportError.invalidLayout("mpirun -np \(worldSize) leaves \(workers) rank(s) besides the "
                                               + "coordinator, too few for \(v) vision rank(s) + 1 stage; run with "
                                               + "-np \(v + 2) or more, or lower --vision-ranks.")
        }
        let cap = max(1, min(workers - v, maxStages ?? Int.max))
        if let s = (1...cap).first(where: { workers % (v + $0) == 0 }) {
            return try Layout(visionRanks: v, stages: s, replicas: workers / (v + s))
        }
        // Only reached when maxStages keeps S below the S that fits with this V.
        let layers = maxStages ?? cap
        if visionRanks == nil, let d = (2...workers).first(where: { workers % $0 == 0 }) {
            let s = min(layers, d - 1)
            return try Layout(visionRanks: d - s, stages: s, replicas: workers / d)
        }
        let needed = (1...(workers - v)).first(where: { workers % (v + $0) == 0 }) ?? (workers - v)
        let misfit = misfit(worldSize: worldSize, visionRanks: v, stages: 1,
                            hint: "leave out --vision-ranks (spare ranks then become vision ranks), "
                                + "or give --stages S ≤ \(layers) and --vision-ranks V with 1 + R·(V+S) = \(worldSize)")
        guard case .invalidLayout(let text) = misfit else { throw misfit }
        throw TransportError.invalidLayout(
            "mpirun -np \(worldSize) with \(v) vision rank(s) per replica would need \(needed) decoder stages, but "
            + "the decoder has \(layers) layer(s) (at most \(layers) stage(s)). " + text)
    }

    private static func misfit(worldSize: Int, visionRanks v: Int, stages s: Int, hint: String) -> TransportError {
        let perReplica = v + s
        let below = worldSize > 1 + perReplica ? 1 + (worldSize - 1) / perReplica * perReplica : nil
        let above = 1 + ((worldSize - 1) / perReplica + 1) * perReplica
        let examples = (1...3).map { String(1 + $0 * perReplica) }.joined(separator: ", ")
        let suggestion = [below, above].compactMap { $0 }.map { "-np \($0)" }.joined(separator: " or ")
        return .invalidLayout("mpirun -np \(worldSize) does not fit: \(v) vision rank(s) + \(s) stage(s) per replica "
                              + "need N = 1 + R·\(perReplica) ranks (\(examples), ...); run with \(suggestion), "
                              + hint + ".")
    }

    /// The role of `rank` (0..<worldSize).
    public func role(of rank: Int) -> Role {
        precondition((0..<worldSize).contains(rank), "rank \(rank) is outside the layout's 0..<\(worldSize)")
        if rank == 0 { return .coordinator }
        let replica = (rank - 1) / ranksPerReplica
        let offset = (rank - 1) % ranksPerReplica
        return offset < visionRanks ? .vision(replica: replica, index: offset)
                                    : .stage(replica: replica, index: offset - visionRanks)
    }

    /// The rank of `role`.
    public func rank(of role: Role) -> Int {
        switch role {
        case .coordinator: return 0
        case .vision(let replica, let index):
            precondition((0..<visionRanks).contains(index), "vision index \(index) is outside 0..<\(visionRanks)")
            return visionRanks(ofReplica: replica).lowerBound + index
        case .stage(let replica, let index):
            precondition((0..<stages).contains(index), "stage index \(index) is outside 0..<\(stages)")
            return stageRanks(ofReplica: replica).lowerBound + index
        }
    }

    /// The vision ranks of `replica`.
    public func visionRanks(ofReplica replica: Int) -> Range<Int> {
        precondition((0..<replicas).contains(replica), "replica \(replica) is outside 0..<\(replicas)")
        let base = 1 + replica * ranksPerReplica
        return base..<(base + visionRanks)
    }

    /// The decoder stage ranks of `replica`, stage 0 first.
    public func stageRanks(ofReplica replica: Int) -> Range<Int> {
        precondition((0..<replicas).contains(replica), "replica \(replica) is outside 0..<\(replicas)")
        let base = 1 + replica * ranksPerReplica + visionRanks
        return base..<(base + stages)
    }

    public var description: String {
        "\(worldSize) ranks: coordinator + \(replicas) replica(s) × (\(visionRanks) vision + \(stages) stage(s))"
    }
}

// MARK: Failure detection: who watches whom

extension Layout {
    /// The ranks `rank` exchanges pipeline data with, in both directions, sorted: a vision rank and
    /// stage 0 of its replica (embeddings); stage s and stages s ± 1 (hidden states); stage 0 and the
    /// last stage (sampled tokens go back to stage 0). The coordinator has none here: it talks to every
    /// worker (jobs, results, stats) and watches them all (`watchedPeers`). Symmetric: b is a data
    /// neighbour of a exactly when a is one of b.
    public func dataNeighbours(of rank: Int) -> [Int] {
        var neighbours: Set<Int> = []
        switch role(of: rank) {
        case .coordinator:
            return []
        case .vision(let replica, _):
            neighbours.insert(self.rank(of: .stage(replica: replica, index: 0)))
        case .stage(let replica, let index):
            if index == 0 { neighbours.formUnion(visionRanks(ofReplica: replica)) }
            if index > 0 { neighbours.insert(self.rank(of: .stage(replica: replica, index: index - 1))) }
            if index + 1 < stages { neighbours.insert(self.rank(of: .stage(replica: replica, index: index + 1))) }
            if stages > 1 && index == 0 { neighbours.insert(self.rank(of: .stage(replica: replica, index: stages - 1))) }
            if stages > 1 && index == stages - 1 { neighbours.insert(self.rank(of: .stage(replica: replica, index: 0))) }
        }
        neighbours.remove(rank)
        return neighbours.sorted()
    }

    /// The peers `rank` watches (counts as hung when silent for too long), sorted: the coordinator
    /// watches every worker; a worker watches the coordinator and its data neighbours (all in its own
    /// replica), so a rank watches at most V + 3 peers except rank 0.
    public func watchedPeers(of rank: Int) -> [Int] {
        if rank == 0 { return Array(1..<worldSize) }
        return [0] + dataNeighbours(of: rank)
    }

    /// The ranks that watch `rank`, sorted: exactly the r with `rank` in `watchedPeers(of: r)` (computed
    /// from that definition, so the two cannot disagree). `rank` sends its heartbeats to these.
    public func watchers(of rank: Int) -> [Int] {
        // A worker's watched peers are rank 0 and ranks of its own replica; rank 0 watches every worker.
        let candidates: [Int]
        if rank == 0 {
            candidates = Array(1..<worldSize)
        } else {
            let replica = (rank - 1) / ranksPerReplica
            candidates = [0] + Array(visionRanks(ofReplica: replica)) + Array(stageRanks(ofReplica: replica))
        }
        return candidates.filter { $0 != rank && watchedPeers(of: $0).contains(rank) }
    }
}
