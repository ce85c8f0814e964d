// config.json parsing against transformers 5.23: every fixture's resolved values (expected.json,
// dumped from PaliGemmaConfig.from_pretrained(dir).to_dict()) must equal what this parser gives,
// key by key, in transformers' spelling.
import Foundation
import PaliJSON
import Testing
@testable import PaliWeights

@Suite struct ConfigurationTests {
    static let cases: [String] = (try? FileManager.default.contentsOfDirectory(atPath: fixture("configs").path).sorted()) ?? []

    static func load(_ name: String) throws -> PaliGemmaConfiguration {
        try PaliGemmaConfiguration(contentsOf: fixture("configs/\(name)"))
    }

    static func json(_ data: Data) throws -> [String: JSONValue] {
        guard case .object(let members) = try JSONValue.parse(utf8: data) else { throw CocoaError(.coderReadCorrupt) }
        return Dictionary(uniqueKeysWithValues: members.map { ($0.0, $0.1) })
    }

    static func section(_ dict: [String: JSONValue], _ key: String) -> [String: JSONValue] {
        guard case .object(let members)? = dict[key] else { return [:] }
        return Dictionary(uniqueKeysWithValues: members.map { ($0.0, $0.1) })
    }

    /// JSON equality with numbers compared by value (256 == 256.0) and objects unordered.
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return Double(x) == Double(y)
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)):
            let dx = Dictionary(uniqueKeysWithValues: x.map { ($0.0, $0.1) })
            let dy = Dictionary(uniqueKeysWithValues: y.map { ($0.0, $0.1) })
            return dx.count == dy.count && dx.allSatisfy { k, v in dy[k].map { same(v, $0) } ?? false }
        default: return a == b
        }
    }

    @Test func everyFixtureIsCovered() {
        #expect(Self.cases.count >= 10)
        #expect(Self.cases.contains("pg1_224_hub") && Self.cases.contains("pg2_3b_224_hub") && Self.cases.contains("tiny_saved"))
    }

    @Test(arguments: cases)
    func resolvedValuesEqualTransformers(name: String) throws {
        let config = try Self.load(name)
        let ours = try Self.json(JSONEncoder().encode(config))
        let theirs = try Self.json(Data(contentsOf: fixture("configs/\(name)/expected.json")))
        let theirsText = Self.section(theirs, "text")
        for (section, oursKey, theirsKey) in [("vision", "vision_config", "vision"), ("text", "text_config", "text")] {
            let mine = Self.section(ours, oursKey), expected = Self.section(theirs, theirsKey)
            #expect(mine.count >= 12, "\(name) \(section): only \(mine.count) keys encoded")
            for (key, value) in mine {
                guard let want = expected[key] else { Issue.record("\(name) \(section).\(key): transformers has no such key"); continue }
                #expect(Self.same(value, want), "\(name) \(section).\(key): ours \(value), transformers \(want)")
            }
        }
        let top = Self.section(theirs, "top")
        for (key, value) in ours where key != "vision_config" && key != "text_config" {
            // bos/eos/pad exist at the top level only when config.json has them; else the text config's apply.
            guard let want = top[key] ?? (["bos_token_id", "eos_token_id", "pad_token_id"].contains(key) ? theirsText[key] : nil) else {
                Issue.record("\(name) top.\(key): transformers has no such key"); continue
            }
            #expect(Self.same(value, want), "\(name) top.\(key): ours \(value), transformers \(want)")
        }
    }

    @Test(arguments: cases)
    func encodingRoundTrips(name: String) throws {
        let config = try Self.load(name)
        let again = try PaliGemmaConfiguration(data: JSONEncoder().encode(config))
        #expect(again == config)
    }

    @Test func paliGemma1HubConfig() throws {
        let c = try Self.load("pg1_224_hub")
        #expect(!c.isGemma2)
        #expect(c.text.headDim == 256)                         // absent from the hub's text_config
        #expect(c.text.hiddenActivation == "gelu_pytorch_tanh")
        #expect(c.vision.imageSize == 224)                     // absent from the hub's vision_config
        #expect(c.numImageTokens == 256)
        #expect(c.text.vocabSize == 257_216 && c.vocabSize == 257_152)
        #expect(c.imageTokenIndex == 257_152)
        #expect(c.bosTokenId == 2 && c.eosTokenIds == [1] && c.padTokenId == 0)
        #expect(c.embedScale == Float(2048.0.squareRoot()))
        #expect(c.text.attentionScale == 1.0 / 16)
        #expect((0..<18).allSatisfy { !c.isSlidingLayer($0) })
        #expect(c.text.useBidirectionalAttention == true)
        #expect(try Self.load("pg1_448_hub").numImageTokens == 1024)
    }

    @Test func paliGemma2HubConfig() throws {
        let c = try Self.load("pg2_3b_224_hub")
        #expect(c.isGemma2)
        #expect(c.text.queryPreAttnScalar == 256 && c.text.attnLogitSoftcapping == 50 && c.text.finalLogitSoftcapping == 30)
        #expect(c.text.slidingWindow == 4096)
        #expect((0..<26).map(c.isSlidingLayer) == (0..<26).map { $0 % 2 == 0 })
        #expect(!c.isSlidingLayer(26) && !c.isSlidingLayer(-1))
        #expect(c.embedScale == 48)
        #expect(c.text.eosTokenIds == [1, 107] && c.eosTokenIds == [1])
        let big = try Self.load("pg2_28b_896_hub")
        #expect(big.text.headDim == 128 && big.text.queryPreAttnScalar == 144)
        #expect(big.text.attentionScale == 1.0 / 12)
        #expect(big.numImageTokens == 4096)
        #expect(big.embedScale == Float(4608.0.squareRoot()))
    }

    @Test func subConfigDefaults() throws {
        // Absent sub-configs: PaliGemmaConfig's own defaults (intermediate 4096, vocab 257152).
        let d = try Self.load("defaults_only")
        #expect(d.vision == { var v = SiglipVisionConfiguration.paliGemmaDefault; v.projectionDim = 2048; return v }())
        #expect(d.text.vocabSize == 257_152 && d.text.layers == 18 && d.text.kvHeads == 1)
        #expect(d.imageTokenIndex == 256_000)
        // Present but sparse: the sub-config classes' defaults.
        let s = try Self.load("sparse_gemma2")
        #expect(s.vision.patchSize == 16 && s.vision.hiddenSize == 768 && s.vision.visionUseHead)
        #expect(s.numImageTokens == 196)
        #expect(s.text.layers == 26 && s.text.hiddenSize == 2304)
        // Legacy spellings.
        let l = try Self.load("legacy_keys")
        #expect(l.text.hiddenActivation == "gelu_pytorch_tanh")   // "gelu" rewritten for Gemma
        #expect(l.text.ropeTheta == 20_000)
        #expect(l.imageTokenIndex == 300)
        #expect(l.text.padTokenId == nil && l.padTokenId == nil)
        let r = try Self.load("rope_parameters")
        #expect(r.text.ropeTheta == 5000)
        #expect((0..<4).map(r.isSlidingLayer) == [false, true, false, false])
        #expect(r.text.slidingWindow == 512)
    }

    /// Presets (built in code from SPEC §1) agree with the hub-style configs on everything the model uses.
    @Test(arguments: [("pg1_224_hub", PaliGemmaConfiguration.paligemma3b224),
                      ("pg1_448_hub", PaliGemmaConfiguration.paligemma3b448),
                      ("pg2_3b_224_hub", PaliGemmaConfiguration.paligemma2_3b224),
                      ("pg2_28b_896_hub", PaliGemmaConfiguration.paligemma2(.b28, imageSize: 896))])
    func presetsMatchHubConfigs(name: String, preset: PaliGemmaConfiguration) throws {
        var parsed = try Self.load(name)
        #expect(parsed.vision == preset.vision)
        parsed.text.eosTokenIds = preset.text.eosTokenIds  // generation-only detail of the hub's PG2 text_config
        #expect(parsed.text == preset.text)
        #expect(parsed.imageTokenIndex == preset.imageTokenIndex)
        #expect(parsed.projectionDim == preset.projectionDim)
        #expect(parsed.bosTokenId == preset.bosTokenId && parsed.eosTokenIds == preset.eosTokenIds && parsed.padTokenId == preset.padTokenId)
    }

    @Test func presetsAreConsistent() throws {
        for preset in [PaliGemmaConfiguration.paligemma3b224, .paligemma3b448, .paligemma3b896,
                       .paligemma2_3b224, .paligemma2_10b224, .paligemma2_28b224] {
            #expect(try PaliGemmaConfiguration(data: JSONEncoder().encode(preset)) == preset)
            #expect(preset.projectionDim == preset.text.hiddenSize)
        }
        #expect(PaliGemmaConfiguration.paligemma3b896.numImageTokens == 4096)
        #expect(PaliGemmaConfiguration.paligemma2_10b224.embedScale == Float(3584.0.squareRoot()))
    }

    /// (config.json, the key the error must name, unsupported vs. invalid)
    static let badConfigs: [(String, String, Bool)] = [
        (#"{"text_config": {"model_type": "gemma2", "hidden_activation": "relu"}, "projection_dim": 2304}"#, "text_config.hidden_activation", true),
        (#"{"text_config": {"hidden_act": "gelu_new"}}"#, "text_config.hidden_act", true),
        (#"{"vision_config": {"hidden_act": "gelu"}}"#, "vision_config.hidden_act", true),
        (#"{"text_config": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}}"#, "text_config.rope_scaling", true),
        (#"{"text_config": {"rope_scaling": {"type": "dynamic"}}}"#, "text_config.rope_scaling", true),
        (#"{"text_config": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 1}}}"#, "text_config.rope_parameters", true),
        (#"{"text_config": {"rope_parameters": {"rope_theta": 1, "partial_rotary_factor": 0.5}}}"#, "text_config.rope_parameters", true),
        (#"{"text_config": {"model_type": "gemma3"}}"#, "text_config.model_type", true),
        (#"{"vision_config": {"model_type": "clip_vision_model"}}"#, "vision_config.model_type", true),
        (#"{"model_type": "llava"}"#, "model_type", true),
        (#"{"vision_config": {"image_size": [448, 448]}}"#, "vision_config.image_size", true),
        (#"{"text_config": {"attention_bias": true}}"#, "text_config.attention_bias", true),
        (#"{"text_config": {"model_type": "gemma2", "layer_types": ["sliding_attention"]}, "projection_dim": 2304}"#, "text_config.layer_types", false),
        (#"{"text_config": {"model_type": "gemma2", "layer_types": ["chunked_attention"]}, "projection_dim": 2304}"#, "text_config.layer_types", true),
        (#"{"projection_dim": 1024}"#, "projection_dim", false),
        (#"{"text_config": {"hidden_size": "2048"}}"#, "text_config.hidden_size", false),
        (#"{"text_config": {"num_key_value_heads": 3}}"#, "text_config.num_key_value_heads", false),
        (#"{"text_config": {"num_hidden_layers": 0}}"#, "text_config.num_hidden_layers", false),
        (#"{"vision_config": {"num_attention_heads": 5}}"#, "vision_config.num_attention_heads", false),
        (#"{"vision_config": {"patch_size": 300}}"#, "vision_config.image_size", false),
        (#"{"text_config": {"rms_norm_eps": -1}}"#, "text_config.rms_norm_eps", false),
        (#"{"image_token_index": -5}"#, "image_token_index", false),
        (#"{"text_config": 7}"#, "text_config", false),
        (#"{"text_config": {"model_type": "gemma"},"#, "", false),
        (#"[]"#, "", false),
    ]

    @Test(arguments: badConfigs.indices)
    func badConfigurationsAreClearErrors(index: Int) {
        let (json, key, unsupported) = Self.badConfigs[index]
        #expect {
            _ = try PaliGemmaConfiguration(data: Data(json.utf8), path: "/models/x/config.json")
        } throws: { error in
            guard let e = error as? WeightsError, e.path == "/models/x/config.json", e.description.contains("/models/x/config.json") else {
                Issue.record("\(json): \(error)"); return false
            }
            switch e {
            case .unsupportedConfiguration(_, let k, _, _) where unsupported && k == key: return true
            case .invalidConfiguration(_, let k, _) where !unsupported && k == key: return true
            default: Issue.record("\(json): \(e)"); return false
            }
        }
    }

    /// Foundation's JSONDecoder says "not valid JSON", with no key, for a number that does not fit its
    /// key's type: the message must name the key and say what is wrong with it (issue 13).
    @Test(arguments: [
        (#"{"text_config": {"num_hidden_layers": 4.5}}"#, "text_config.num_hidden_layers", "4.5 is not an integer"),
        (#"{"text_config": {"rms_norm_eps": 1e-6, "num_hidden_layers": 2.5}}"#, "text_config.num_hidden_layers",
         "2.5 is not an integer"),
        (#"{"vision_config": {"hidden_size": 1e400}}"#, "vision_config.hidden_size", "1e400 is out of range"),
        (#"{"image_token_index": 257152.5, "text_config": {"rope_theta": 10000.0}}"#, "image_token_index", "not an integer"),
        (#"{"text_config": {"num_hidden_layers": 2}"#, "", "not valid JSON"),
    ])
    func aNumberOfTheWrongKindIsNamedByItsKey(json: String, key: String, words: String) {
        do {
            _ = try PaliGemmaConfiguration(data: Data(json.utf8), path: "/m/config.json")
            Issue.record("\(json) was accepted")
        } catch let error as WeightsError {
            guard case .invalidConfiguration(_, let k, _) = error else { Issue.record("\(error)"); return }
            #expect(k == key && error.description.contains(words), "\(json): \(error)")
            if !key.isEmpty { #expect(!error.description.contains("not valid JSON"), "\(error)") }
        } catch {
            Issue.record("\(json): \(error)")
        }
    }

    @Test func missingConfigFile() {
        #expect {
            _ = try PaliGemmaConfiguration(contentsOf: fixture("configs/nope/config.json"))
        } throws: { error in
            guard case .cannotOpen(let path, _)? = error as? WeightsError else { return false }
            return path.hasSuffix("configs/nope/config.json")
        }
    }
}
