// Stage splitting: balanced by cost, head and embedding accounted for, overrides validated.
import Testing
@testable import PaliPipeline

@Test(arguments: [
    (18, 1, [18]), (18, 2, [9, 9]), (18, 3, [6, 6, 6]), (18, 4, [5, 5, 4, 4]), (18, 18, Array(repeating: 1, count: 18)),
    (26, 2, [13, 13]), (42, 5, [9, 9, 8, 8, 8]), (3, 2, [2, 1]),
])
func equalCostSplits(layers: Int, stages: Int, counts: [Int]) throws {
    let plan = try StagePlan.split(layers: layers, stages: stages)
    #expect(plan.layerCounts == counts)
    #expect(plan.ranges.first?.lowerBound == 0 && plan.ranges.last?.upperBound == layers)
}

@Test func headAndEmbeddingCostsShiftLayers() throws {
    // Gemma-2B decode: the LM head weighs ≈ 4.8 layers, so the last stage takes fewer layers.
    #expect(try StagePlan.split(layers: 18, stages: 2, headCost: 4.8).layerCounts == [11, 7])
    #expect(try StagePlan.split(layers: 18, stages: 3, headCost: 4.8).layerCounts == [8, 7, 3])
    #expect(try StagePlan.split(layers: 4, stages: 2, embeddingCost: 2).layerCounts == [1, 3])
    #expect(try StagePlan.split(layers: 4, stages: 2, cost: [1, 1, 1, 10]).layerCounts == [3, 1])
    let plan = try StagePlan.split(layers: 18, stages: 2, headCost: 4.8)
    let costs = plan.stageCosts(headCost: 4.8)
    #expect(abs(costs[0] - 11) < 1e-9 && abs(costs[1] - 11.8) < 1e-9)
}

@Test func lmHeadCostOfGemma2B() {
    let cost = StagePlan.lmHeadCost(width: 2048, vocabSize: 257_216, mlpWidth: 16_384, queryWidth: 2048, kvWidth: 256)
    #expect(abs(cost - 4.78) < 0.01)
}

/// The least possible maximum stage cost, by trying every composition (small cases only).
private func bruteForceMax(_ costs: [Double], stages: Int, head: Double, embedding: Double) -> Double {
    func search(_ start: Int, _ stage: Int) -> Double {
        if stage == stages - 1 {
            return costs[start...].reduce(0, +) + head + (stage == 0 ? embedding : 0)
        }
        var best = Double.infinity
        for end in (start + 1)...(costs.count - (stages - 1 - stage)) {
            let here = costs[start..<end].reduce(0, +) + (stage == 0 ? embedding : 0)
            best = min(best, max(here, search(end, stage + 1)))
        }
        return best
    }
    return search(0, 0)
}

@Test func randomCostsMatchBruteForce() throws {
    var random = TestRandom(seed: 5)
    for _ in 0..<300 {
        let layers = 1 + random.int(9), stages = 1 + random.int(min(layers, 4))
        let costs = (0..<layers).map { _ in Double(1 + random.int(20)) / 4 }
        let head = Double(random.int(12)) / 2, embedding = Double(random.int(4)) / 2
        let plan = try StagePlan.split(layers: layers, stages: stages, cost: costs, embeddingCost: embedding,
                                       headCost: head)
        #expect(plan.stages == stages && plan.layerCounts.allSatisfy { $0 >= 1 })
        let achieved = plan.stageCosts(cost: costs, embeddingCost: embedding, headCost: head).max()!
        let optimum = bruteForceMax(costs, stages: stages, head: head, embedding: embedding)
        #expect(abs(achieved - optimum) < 1e-9, "costs \(costs) head \(head) emb \(embedding): \(plan)")
    }
}

@Test func splitRejectsBadRequests() {
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 18, stages: 0) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 18, stages: 19) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 0, stages: 1) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 3, stages: 1, cost: [1, 1]) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 2, stages: 1, cost: [1, -1]) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 2, stages: 1, cost: [1, .nan]) }
    #expect(throws: TransportError.self) { try StagePlan.split(layers: 2, stages: 1, headCost: .infinity) }
}

@Test func overrides() throws {
    #expect(try StagePlan.parse("6,6,6", layers: 18).layerCounts == [6, 6, 6])
    #expect(try StagePlan.parse(" 10, 8 ", layers: 18, stages: 2).ranges == [0..<10, 10..<18])
    #expect(try StagePlan.parse("18", layers: 18).stages == 1)
    for (text, stages, needle) in [("6,6,5", nil, "covers 17 layers"), ("6,6,5", nil, "e.g. 6,6,6"),
                                   ("6,0,12", nil, "at least one layer"), ("9,9", 3, "2 entries for 3 stages"),
                                   ("a,b", nil, "comma-separated"), ("", nil, "comma-separated"),
                                   ("6,,12", nil, "comma-separated"), ("-1,19", nil, "at least one layer")] as [(String, Int?, String)] {
        do {
            let plan = try StagePlan.parse(text, layers: 18, stages: stages)
            Issue.record("\"\(text)\" parsed as \(plan)")
        } catch let TransportError.invalidStagePlan(message) {
            #expect(message.contains(needle), "\(message)")
        }
    }
}

@Test func layerToStage() throws {
    let plan = try StagePlan.parse("3,2,4", layers: 9)
    #expect((0..<9).map(plan.stage(ofLayer:)) == [0, 0, 0, 1, 1, 2, 2, 2, 2])
    #expect(plan.description == "3,2,4")
}
