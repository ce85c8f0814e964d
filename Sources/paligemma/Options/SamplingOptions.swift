import ArgumentParser
import PaliGeneration

/// Decoding options shared by `generate` and `run`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Most new tokens per answer.")
    var maxTokens: Int = 20

    @Option(help: "Sampling temperature; 0 is greedy (the default).")
    var temperature: Float = 0

    @Option(help: "Sample only among the k most likely tokens.")
    var topK: Int?

    @Option(help: "Sample only among the most likely tokens whose probabilities add up to p.")
    var topP: Float?

    @Option(help: "Seed of the sampler (each job's sampling is reproducible).")
    var seed: UInt64 = 0

    @Option(help: "Beam search with this many beams (transformers' num_beams, length_penalty 1.0, early_stopping False); 1 is greedy or sampling.")
    var beams: Int = 1

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        // Float(argument:) accepts "nan", "inf" and "infinity": refuse them here, or NaN would sample garbage
        // and could not even be written to run.json.
        if !temperature.isFinite || temperature < 0 {
            throw ValidationError("--temperature must be a finite number ≥ 0 (0 is greedy), not \(temperature)")
        }
        if let k = topK, k < 1 { throw ValidationError("--top-k must be at least 1") }
        if let p = topP, !(p > 0 && p <= 1) { throw ValidationError("--top-p must be a number in (0, 1], not \(p)") }
        if !(1...64).contains(beams) { throw ValidationError("--beams must be between 1 and 64, not \(beams)") }
        if beams > 1 && (temperature > 0 || topK != nil || topP != nil) {
            throw ValidationError("--beams \(beams) is deterministic beam search: leave out --temperature, --top-k and --top-p")
        }
    }

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
    }
}
