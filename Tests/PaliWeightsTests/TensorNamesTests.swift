import Testing
@testable import PaliWeights

@Suite struct TensorNamesTests {
    /// (name as written somewhere, canonical name) — SPEC §6, §7b.
    static let cases: [(String, String)] = [
        // hub legacy names are already canonical
        ("vision_tower.vision_model.embeddings.patch_embedding.weight", "vision_tower.vision_model.embeddings.patch_embedding.weight"),
        ("multi_modal_projector.linear.bias", "multi_modal_projector.linear.bias"),
        ("language_model.model.layers.17.mlp.down_proj.weight", "language_model.model.layers.17.mlp.down_proj.weight"),
        ("language_model.lm_head.weight", "language_model.lm_head.weight"),
        // transformers 5.x save_pretrained
        ("vision_tower.encoder.layers.3.self_attn.q_proj.bias", "vision_tower.vision_model.encoder.layers.3.self_attn.q_proj.bias"),
        ("vision_tower.post_layernorm.weight", "vision_tower.vision_model.post_layernorm.weight"),
        // transformers 4.52 in memory
        ("model.vision_tower.vision_model.embeddings.position_embedding.weight", "vision_tower.vision_model.embeddings.position_embedding.weight"),
        ("model.multi_modal_projector.linear.weight", "multi_modal_projector.linear.weight"),
        ("model.language_model.layers.0.input_layernorm.weight", "language_model.model.layers.0.input_layernorm.weight"),
        ("model.language_model.embed_tokens.weight", "language_model.model.embed_tokens.weight"),
        ("model.language_model.norm.weight", "language_model.model.norm.weight"),
        ("lm_head.weight", "language_model.lm_head.weight"),
        // transformers 5.x in memory
        ("model.vision_tower.embeddings.patch_embedding.bias", "vision_tower.vision_model.embeddings.patch_embedding.bias"),
        ("model.vision_tower.encoder.layers.26.mlp.fc2.weight", "vision_tower.vision_model.encoder.layers.26.mlp.fc2.weight"),
        // a bare PaliGemmaModel
        ("language_model.layers.5.self_attn.o_proj.weight", "language_model.model.layers.5.self_attn.o_proj.weight"),
        ("language_model.embed_tokens.weight", "language_model.model.embed_tokens.weight"),
        ("language_model.norm.weight", "language_model.model.norm.weight"),
        // unknown names pass through (they surface as unused tensors)
        ("vision_tower.vision_model.head.probe", "vision_tower.vision_model.head.probe"),
        ("some.other.tensor", "some.other.tensor"),
        ("language_model.layers_extra", "language_model.layers_extra"),
    ]

    @Test(arguments: cases)
    func canonicalName(input: String, canonical: String) {
        #expect(TensorNames.canonical(input) == canonical)
        #expect(TensorNames.canonical(canonical) == canonical)  // idempotent
    }

    @Test func rulesAreOrderedLongestPrefixFirst() {
        let rules = TensorNames.prefixRules
        for (i, a) in rules.enumerated() {
            for b in rules[(i + 1)...] {
                #expect(!b.from.hasPrefix(a.from) || b.from == a.from, "'\(b.from)' is shadowed by '\(a.from)'")
            }
        }
        // Every rule's target is canonical.
        for rule in rules { #expect(TensorNames.canonical(rule.to + "x") == rule.to + "x") }
    }
}
