// Tensor-name normalisation: every naming scheme PaliGemma checkpoints are written in, mapped onto
// ONE canonical scheme, the hub's legacy names (SPEC §6):
//
//   vision_tower.vision_model.*      SigLIP tower
//   multi_modal_projector.linear.*   projector
//   language_model.model.*           Gemma decoder
//   language_model.lm_head.weight    optional tied copy of the embedding
//
// Accepted spellings (SPEC §6, §7b): the hub's; transformers 5.x `save_pretrained` (vision tower
// without `vision_model.`); transformers 4.52 in-memory names (`model.` in front, `lm_head.*`);
// transformers 5.x in-memory names (`model.vision_tower.*` without `vision_model.`); and a bare
// `PaliGemmaModel` (`language_model.layers.*`). Names matching no rule are kept unchanged (they show
// up as unused tensors when loading).

public enum TensorNames {
    /// Canonical prefixes (SPEC §6).
    public static let vision = "vision_tower.vision_model."
    public static let projector = "multi_modal_projector."
    public static let decoder = "language_model.model."
    public static let lmHead = "language_model.lm_head.weight"

    /// Whether a canonical name belongs to the vision rank's part (SigLIP and the projector).
    public static func isVision(_ canonical: String) -> Bool {
        canonical.hasPrefix(vision) || canonical.hasPrefix(projector)
    }

    /// The decoder layer a canonical name belongs to, if any.
    public static func decoderLayer(of canonical: String) -> Int? {
        let prefix = decoder + "layers."
        guard canonical.hasPrefix(prefix) else { return nil }
        return Int(canonical.dropFirst(prefix.count).prefix { $0 != "." })
    }

    /// The tied embedding / LM head matrix (or the final norm, held with it by the last stage).
    public static func isEmbedding(_ canonical: String) -> Bool {
        canonical == decoder + "embed_tokens.weight" || canonical == decoder + "norm.weight"
    }

    /// Tensors a checkpoint may carry that a model with tied embeddings does not read.
    public static let optionalTiedCopies: Set<String> = [lmHead]

    /// (on-disk prefix, canonical prefix), checked in order: the first prefix that matches wins, so a
    /// longer prefix precedes any shorter one it starts with. This table is the whole mapping.
    public static let prefixRules: [(from: String, to: String)] = [
        // SigLIP tower
        ("vision_tower.vision_model.", vision),                   // hub, transformers 4.x save_pretrained
        ("model.vision_tower.vision_model.", vision),             // transformers 4.52 in memory
        ("model.vision_tower.", vision),                          // transformers 5.x in memory
        ("vision_tower.", vision),                                // transformers 5.x save_pretrained
        // projector
        ("multi_modal_projector.", projector),                    // hub
        ("model.multi_modal_projector.", projector),              // transformers ≥ 4.52 in memory
        // Gemma decoder
        ("language_model.model.", decoder),                       // hub, save_pretrained
        ("model.language_model.", decoder),                       // transformers ≥ 4.52 in memory
        ("language_model.layers.", decoder + "layers."),          // bare PaliGemmaModel
        ("language_model.embed_tokens.", decoder + "embed_tokens."),
        ("language_model.norm.", decoder + "norm."),
        // tied head
        ("language_model.lm_head.", "language_model.lm_head."),   // hub (when present)
        ("lm_head.", "language_model.lm_head."),                  // transformers ≥ 4.52
    ]

    /// The canonical name for an on-disk or in-memory tensor name. Idempotent.
    public static func canonical(_ name: String) -> String {
        for rule in prefixRules where name.hasPrefix(rule.from) {
            return rule.to + name.dropFirst(rule.from.count)
        }
        return name
    }
}
