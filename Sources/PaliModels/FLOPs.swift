// Floating-point operation counts (multiply-add = 2) of each phase, for benchmarks' fraction of the
// machine's sgemm rate. Matrix products only; norms and activations are noise at these sizes.

public enum FLOPs {
    /// One image through the vision tower.
    public static func vision(_ v: VisionHyperparameters) -> Int {
        let n = v.tokens, d = v.width, f = v.mlpWidth
        let perLayer = 2 * n * (4 * d * d + 2 * d * f) + 2 * 2 * n * n * d
        return 2 * n * d * v.patchInputs + v.layers * perLayer
    }

    public static func projector(_ v: VisionHyperparameters, textWidth: Int) -> Int {
        2 * v.tokens * v.width * textWidth
    }

    /// `tokens` new tokens through every decoder layer, attending over `context` keys each.
    public static func decoder(_ d: DecoderHyperparameters, tokens: Int, context: Int) -> Int {
        let proj = d.width * (2 * d.queryWidth + 2 * d.kvWidth) + 3 * d.width * d.mlpWidth
        let attention = 2 * 2 * d.heads * d.headDim * context
        return d.layers * tokens * (2 * proj + attention)
    }

    public static func head(_ d: DecoderHyperparameters, rows: Int) -> Int { 2 * rows * d.width * d.vocabSize }
}
