// Layout planning: defaults from the world size, overrides, clear errors, and the rank ↔ role map.
import Testing
@testable import PaliPipeline

struct PlanCase: Sendable, CustomTestStringConvertible {
    let worldSize: Int, vision: Int?, stages: Int?
    /// (V, S, R), or nil when the plan must throw.
    let expected: (v: Int, s: Int, r: Int)?
    /// Text the error must contain.
    let message: String

    init(_ worldSize: Int, _ vision: Int? = nil, _ stages: Int? = nil, _ expected: (Int, Int, Int)?,
         message: String = "") {
        self.worldSize = worldSize; self.vision = vision; self.stages = stages; self.expected = expected
        self.message = message
    }

    var testDescription: String { "N=\(worldSize) V=\(vision.map(String.init) ?? "-") S=\(stages.map(String.init) ?? "-")" }
}

let planCases: [PlanCase] = [
    // Defaults: V = 1, the smallest S that fits (most replicas).
    PlanCase(3, nil, nil, (1, 1, 1)),
    PlanCase(5, nil, nil, (1, 1, 2)),
    PlanCase(7, nil, nil, (1, 1, 3)),
    PlanCase(9, nil, nil, (1, 1, 4)),
    PlanCase(4, nil, nil, (1, 2, 1)),
    PlanCase(10, nil, nil, (1, 2, 3)),
    PlanCase(6, nil, nil, (1, 4, 1)),
    PlanCase(17, nil, nil, (1, 1, 8)),
    // np = 1: one replica, every role in one process.
    PlanCase(1, nil, nil, (1, 1, 1)),
    PlanCase(1, nil, 2, (1, 2, 1)),
    // Overrides.
    PlanCase(7, nil, 2, (1, 2, 2)),
    PlanCase(13, 2, 2, (2, 2, 3)),
    PlanCase(9, 2, nil, (2, 2, 2)),
    PlanCase(5, nil, 3, (1, 3, 1)),
    PlanCase(7, 2, 1, (2, 1, 2)),
    // Misfits name the sizes that would fit.
    PlanCase(6, nil, 1, nil, message: "-np 5 or -np 7"),
    PlanCase(8, nil, 3, nil, message: "-np 5 or -np 9"),
    PlanCase(4, 1, 1, nil, message: "-np 3 or -np 5"),
    PlanCase(3, nil, 3, nil, message: "-np 5"),
    PlanCase(3, 2, nil, nil, message: "-np 4 or more"),
    PlanCase(2, nil, nil, nil, message: "-np 1"),
    PlanCase(0, nil, nil, nil, message: "-np 3"),
    PlanCase(5, 0, nil, nil, message: "--vision-ranks"),
    PlanCase(5, nil, 0, nil, message: "--stages"),
]

@Test(arguments: planCases)
func planning(_ c: PlanCase) throws {
    if let (v, s, r) = c.expected {
        let layout = try Layout.plan(worldSize: c.worldSize, visionRanks: c.vision, stages: c.stages)
        #expect(layout.visionRanks == v && layout.stages == s && layout.replicas == r, "\(layout)")
        #expect(layout.worldSize == (c.worldSize == 1 ? 1 + v + s : c.worldSize))
    } else {
        do {
            let layout = try Layout.plan(worldSize: c.worldSize, visionRanks: c.vision, stages: c.stages)
            Issue.record("expected an error, got \(layout)")
        } catch let TransportError.invalidLayout(text) {
            #expect(text.contains(c.message), "\(text)")
        }
    }
}

@Test func rolesAreContiguousPerReplica() throws {
    let layout = try Layout.plan(worldSize: 9, visionRanks: 1, stages: 3)
    #expect(layout.replicas == 2)
    let roles = (0..<9).map(layout.role(of:))
    #expect(roles == [.coordinator,
                      .vision(replica: 0, index: 0), .stage(replica: 0, index: 0), .stage(replica: 0, index: 1),
                      .stage(replica: 0, index: 2),
                      .vision(replica: 1, index: 0), .stage(replica: 1, index: 0), .stage(replica: 1, index: 1),
                      .stage(replica: 1, index: 2)])
    #expect(layout.visionRanks(ofReplica: 1) == 5..<6)
    #expect(layout.stageRanks(ofReplica: 1) == 6..<9)
}

@Test(arguments: [(1, 1, 1), (1, 1, 4), (2, 3, 2), (3, 1, 3), (1, 5, 1)])
func rankAndRoleAreInverse(v: Int, s: Int, r: Int) throws {
    let layout = try Layout(visionRanks: v, stages: s, replicas: r)
    #expect(layout.worldSize == 1 + r * (v + s))
    var seen = Set<Role>()
    for rank in 0..<layout.worldSize {
        let role = layout.role(of: rank)
        #expect(layout.rank(of: role) == rank)
        seen.insert(role)
    }
    #expect(seen.count == layout.worldSize)
}

// Failure detection (issue 11): who watches whom, and who heartbeats to whom.

@Test(arguments: [(1, 1, 1), (1, 1, 4), (2, 3, 2), (3, 1, 3), (1, 5, 1), (1, 2, 3), (4, 2, 2)])
func heartbeatTargetsAreExactlyTheWatchers(v: Int, s: Int, r: Int) throws {
    let layout = try Layout(visionRanks: v, stages: s, replicas: r)
    let n = layout.worldSize
    for a in 0..<n {
        let watched = layout.watchedPeers(of: a)
        #expect(watched == watched.sorted() && Set(watched).count == watched.count && !watched.contains(a))
        for b in 0..<n where b != a {
            // b heartbeats to a exactly when a watches b.
            #expect(watched.contains(b) == layout.watchers(of: b).contains(a), "rank \(a) watching rank \(b)")
        }
        let neighbours = layout.dataNeighbours(of: a)
        for b in neighbours { #expect(layout.dataNeighbours(of: b).contains(a), "data neighbours are symmetric") }
        if a == 0 {
            #expect(watched == Array(1..<n), "the coordinator watches every worker")
        } else {
            #expect(watched == [0] + neighbours, "a worker watches rank 0 and its data neighbours")
            #expect(watched.count <= v + 3, "per-replica, not all-to-all")
        }
    }
}

@Test func dataNeighboursFollowTheDataFlow() throws {
    // N = 1 + 2·(2 + 3): replica 0 is vision 1, 2 and stages 3, 4, 5.
    let layout = try Layout(visionRanks: 2, stages: 3, replicas: 2)
    #expect(layout.dataNeighbours(of: 0) == [])
    #expect(layout.dataNeighbours(of: 1) == [3], "vision → stage 0 of its replica")
    #expect(layout.dataNeighbours(of: 3) == [1, 2, 4, 5], "stage 0: its vision ranks, stage 1, the last stage (tokens)")
    #expect(layout.dataNeighbours(of: 4) == [3, 5])
    #expect(layout.dataNeighbours(of: 5) == [3, 4])
    #expect(layout.dataNeighbours(of: 8) == [6, 7, 9, 10], "replica 1 keeps to itself")
    #expect(layout.watchers(of: 1) == [0, 3], "a vision rank heartbeats to rank 0 and its stage 0")
    #expect(layout.watchers(of: 0) == Array(1..<11))
    // One stage: the vision rank and the one decoder rank watch each other (the issue's 3-rank job).
    let three = try Layout(visionRanks: 1, stages: 1, replicas: 1)
    #expect(three.watchedPeers(of: 2) == [0, 1] && three.watchers(of: 1) == [0, 2])
    #expect(three.watchedPeers(of: 1) == [0, 2] && three.watchers(of: 2) == [0, 1])
}

@Test func watchSetsStayPerReplicaOnHundredsOfRanks() throws {
    let layout = try Layout(visionRanks: 1, stages: 2, replicas: 200)   // 601 ranks
    let heaviest = (1..<layout.worldSize).map { layout.watchers(of: $0).count }.max()!
    #expect(heaviest <= 4, "a worker heartbeats to rank 0 and at most 3 neighbours, not to all 600")
    #expect(layout.watchers(of: 0).count == 600)
}
