import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor

// Token log-probabilities and beam search against transformers 5.23 (Tests/Oracle/make_score_goldens.py,
// Tests/Fixtures/scores/goldens.json): greedy answers with compute_transition_scores(normalize_logits=True),
// num_beams = 2…5 answers (length_penalty 1.0, early_stopping False) with their per-token scores and
// sequences_scores, on the three tiny checkpoints and the demo model, with the config's <eos> and with
// another stop id that ends answers and finishes beams early.

struct ScoreGolden: Decodable {
    let model: String
    let image: String
    let prompt: String
    let max_new_tokens: Int
    let eos_token_id: [Int]
    let beams: Int
    let tokens: [Int]
    let token_logprobs: [Double]
    let logprob: Double
}

struct ScoreGoldens: Decodable {
    let length_penalty: Double
    let early_stopping: Bool
    let cases: [ScoreGolden]

    static func load() throws -> ScoreGoldens {
        try JSONDecoder().decode(ScoreGoldens.self, from: Data(contentsOf: fixtures.appendingPathComponent("scores/goldens.json")))
    }
}

private let repositoryRoot = fixtures.deletingLastPathComponent().deletingLastPathComponent()

private func request(_ g: ScoreGolden, bundle: ModelBundle) throws -> GenerationRequest {
    let dir = repositoryRoot.appendingPathComponent(g.model)
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: dir))
    let s = bundle.hyper.vision.imageSize
    let pixels = Tensor(shape: [3, s, s], values: try preprocessor.pixelValues(contentsOf: repositoryRoot.appendingPathComponent(g.image)))
    return GenerationRequest(promptIDs: bundle.promptIDs(g.prompt), pixelValues: pixels, maxNewTokens: g.max_new_tokens,
                             beams: g.beams)
}

private func check(_ result: GenerationResult, _ g: ScoreGolden, _ label: String) {
    #expect(result.tokens == g.tokens, "\(label): tokens")
    #expect(result.tokenLogprobs.count == g.token_logprobs.count, "\(label): one log-prob per token")
    let worst = zip(result.tokenLogprobs, g.token_logprobs).map { abs($0 - $1) }.max() ?? 0
    #expect(worst <= 1e-4, "\(label): token log-probs differ by \(worst)")
    #expect(abs(result.logprob - g.logprob) <= 1e-4, "\(label): logprob \(result.logprob), transformers \(g.logprob)")
}

@Test(arguments: ["Tests/Fixtures/models/pg1-mqa", "Tests/Fixtures/models/pg2-softcap",
                  "Tests/Fixtures/models/pg1-sharded-bf16", "models/paligemma-shapes"])
func scoresAndBeamsMatchTransformers(model: String) throws {
    let goldens = try ScoreGoldens.load()
    #expect(goldens.length_penalty == 1.0 && goldens.early_stopping == false)
    let cases = goldens.cases.filter { $0.model == model }
    try #require(cases.count >= 8)
    #expect(cases.contains { $0.beams == 1 } && cases.contains { $0.beams > 1 })
    let bundle = try ModelBundle(directory: repositoryRoot.appendingPathComponent(model))
    let loaded = try bundle.loadModel()
    var byStopIDs: [[Int]: [(ScoreGolden, GenerationRequest)]] = [:]
    for g in cases {
        let generator = Generator(model: loaded, stopIDs: Set(g.eos_token_id))
        let r = try request(g, bundle: bundle)
        let label = "\(model) '\(g.prompt)' eos \(g.eos_token_id) beams \(g.beams)"
        check(generator.generate([r])[0], g, label)
        byStopIDs[g.eos_token_id, default: []].append((g, r))
    }
    // Together in one call (greedy and beam requests of several prompts in the same forwards): the same.
    for (stop, group) in byStopIDs where group.count > 1 {
        let results = Generator(model: loaded, stopIDs: Set(stop)).generate(group.map(\.1))
        for ((g, _), result) in zip(group, results) {
            check(result, g, "\(model) '\(g.prompt)' eos \(stop) beams \(g.beams), batched")
        }
    }
}

/// The cases really exercise what they claim: stop ids that end greedy answers and beam searches early.
@Test func scoreGoldensCoverEarlyStops() throws {
    let cases = try ScoreGoldens.load().cases
    #expect(cases.contains { $0.beams == 1 && $0.tokens.count < $0.max_new_tokens && $0.eos_token_id.contains($0.tokens.last!) })
    #expect(cases.contains { $0.beams > 1 && $0.tokens.count < $0.max_new_tokens && $0.eos_token_id.contains($0.tokens.last!) })
    #expect(cases.contains { $0.beams > 1 && $0.tokens.count == $0.max_new_tokens })
}
