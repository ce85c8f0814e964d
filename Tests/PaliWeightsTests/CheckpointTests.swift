// Checkpoints: sharded (transformers 5.23 save_pretrained), single-file hub layout, layout
// detection, index validation, name normalisation across files, shape checks and unused tensors.
import Foundation
import PaliTensor
import Testing
@testable import PaliWeights

@Suite struct CheckpointTests {
    /// Canonical names of the tiny model (SPEC §6 layout, one vision and one decoder layer).
    static let tinyNames: [String: [Int]] = {
        var names: [String: [Int]] = [
            "vision_tower.vision_model.embeddings.patch_embedding.weight": [8, 3, 7, 7],
            "vision_tower.vision_model.embeddings.patch_embedding.bias": [8],
            "vision_tower.vision_model.embeddings.position_embedding.weight": [4, 8],
            "vision_tower.vision_model.post_layernorm.weight": [8],
            "vision_tower.vision_model.post_layernorm.bias": [8],
            "multi_modal_projector.linear.weight": [16, 8],
            "multi_modal_projector.linear.bias": [16],
            "language_model.model.embed_tokens.weight": [40, 16],
            "language_model.model.norm.weight": [16],
            "language_model.model.layers.0.input_layernorm.weight": [16],
            "language_model.model.layers.0.post_attention_layernorm.weight": [16],
            "language_model.model.layers.0.self_attn.q_proj.weight": [16, 16],
            "language_model.model.layers.0.self_attn.k_proj.weight": [8, 16],
            "language_model.model.layers.0.self_attn.v_proj.weight": [8, 16],
            "language_model.model.layers.0.self_attn.o_proj.weight": [16, 16],
            "language_model.model.layers.0.mlp.gate_proj.weight": [32, 16],
            "language_model.model.layers.0.mlp.up_proj.weight": [32, 16],
            "language_model.model.layers.0.mlp.down_proj.weight": [16, 32],
        ]
        let v = "vision_tower.vision_model.encoder.layers.0."
        for n in ["layer_norm1", "layer_norm2"] { names[v + n + ".weight"] = [8]; names[v + n + ".bias"] = [8] }
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            names[v + "self_attn.\(p).weight"] = [8, 8]; names[v + "self_attn.\(p).bias"] = [8]
        }
        names[v + "mlp.fc1.weight"] = [16, 8]; names[v + "mlp.fc1.bias"] = [16]
        names[v + "mlp.fc2.weight"] = [8, 16]; names[v + "mlp.fc2.bias"] = [8]
        return names
    }()

    /// Copies a fixture directory into a fresh temporary directory.
    static func copyFixture(_ name: String) throws -> URL {
        let dir = try temporaryDirectory().appendingPathComponent(name)
        try FileManager.default.copyItem(at: fixture(name), to: dir)
        return dir
    }

    static func editIndex(_ dir: URL, _ edit: (inout [String: String]) -> Void) throws {
        let url = dir.appendingPathComponent(Checkpoint.indexFileName)
        var root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var map = root["weight_map"] as! [String: String]
        edit(&map)
        root["weight_map"] = map
        try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys]).write(to: url)
    }

    @Test func shardedCheckpointLoads() throws {
        let ckpt = try Checkpoint(directory: fixture("tiny_sharded"))
        #expect(ckpt.files.count == 3)
        #expect(Set(ckpt.tensorNames) == Set(Self.tinyNames.keys))
        for (name, shape) in Self.tinyNames {
            #expect(ckpt.shape(of: name) == shape, "\(name)")
            _ = try ckpt.tensor(name, shape: shape)
        }
        #expect(ckpt.unusedTensorNames().isEmpty)
        try ckpt.verifyAllUsed()
        // On-disk 5.x name, and where it lives.
        let location = try #require(ckpt.location(of: "vision_tower.vision_model.post_layernorm.weight"))
        #expect(location.diskName == "vision_tower.post_layernorm.weight")
        #expect(location.file.lastPathComponent.hasPrefix("model-0000"))
        // Lookups accept any accepted spelling.
        #expect(ckpt.hasTensor("model.vision_tower.post_layernorm.weight"))
        #expect(ckpt.contains("model.language_model.norm.weight"))
        #expect(!ckpt.hasTensor("language_model.lm_head.weight"))
    }

    @Test func sameTensorsUnderHubAndTransformers5Names() throws {
        let sharded = try Checkpoint(directory: fixture("tiny_sharded"))
        let hub = try Checkpoint(directory: fixture("tiny_hub"))
        #expect(hub.files.count == 1)
        #expect(Set(hub.tensorNames) == Set(sharded.tensorNames).union([TensorNames.lmHead]))
        for name in sharded.tensorNames {
            let a = try sharded.tensor(name), b = try hub.tensor(name)
            #expect(a.shape == b.shape && a.scalars == b.scalars, "\(name)")
            #expect(hub.files[0].isMapped(b))  // F32 written by safetensors: aligned, in place
        }
        // The tied copy is optional: not reported unless asked for.
        #expect(hub.unusedTensorNames().isEmpty)
        #expect(hub.unusedTensorNames(includingTiedCopies: true) == [TensorNames.lmHead])
        #expect(try hub.tensor("lm_head.weight").scalars == hub.tensor("language_model.model.embed_tokens.weight").scalars)
    }

    @Test func unusedTensorsAreReported() throws {
        let ckpt = try Checkpoint(directory: fixture("tiny_sharded"))
        let all = ckpt.tensorNames
        for name in all.dropLast(2) { _ = try ckpt.tensor(name) }
        #expect(ckpt.unusedTensorNames() == Array(all.suffix(2)))
        #expect {
            try ckpt.verifyAllUsed()
        } throws: { error in
            guard case .unusedTensors(_, let names)? = error as? WeightsError else { return false }
            return names == Array(all.suffix(2))
        }
        // markUsed takes any accepted spelling.
        #expect(all.suffix(2).allSatisfy { $0.hasPrefix("vision_tower.vision_model.post_layernorm.") })
        ckpt.markUsed(all[all.count - 2])
        ckpt.markUsed(all[all.count - 1].replacingOccurrences(of: "vision_tower.vision_model.", with: "model.vision_tower."))
        #expect(ckpt.unusedTensorNames().isEmpty)
    }

    @Test func shapeMismatchNamesTensorAndBothShapes() throws {
        let ckpt = try Checkpoint(directory: fixture("tiny_hub"))
        let name = "multi_modal_projector.linear.weight"
        #expect {
            _ = try ckpt.tensor(name, shape: [8, 16])
        } throws: { error in
            guard let e = error as? WeightsError, case .shapeMismatch(_, let t, let expected, let actual) = e else { return false }
            return t == name && expected == [8, 16] && actual == [16, 8]
                && e.description.contains("[8, 16]") && e.description.contains("[16, 8]") && e.description.contains(name)
        }
        #expect(ckpt.unusedTensorNames().contains(name))  // a failed load does not count as used
        #expect(throws: WeightsError.tensorNotFound(path: fixture("tiny_hub").path, tensor: "language_model.model.layers.9.x")) {
            _ = try ckpt.tensor("language_model.model.layers.9.x", shape: [1])
        }
    }

    @Test func layoutDetection() throws {
        let fm = FileManager.default
        // Index file given directly.
        let viaIndex = try Checkpoint(file: fixture("tiny_sharded/model.safetensors.index.json"))
        #expect(viaIndex.tensorNames.count == Self.tinyNames.count)
        // One .safetensors file under another name.
        let dir = try temporaryDirectory()
        defer { try? fm.removeItem(at: dir) }
        try fm.copyItem(at: fixture("tiny_hub/model.safetensors"), to: dir.appendingPathComponent("weights.safetensors"))
        #expect(try Checkpoint(directory: dir).tensorNames.count == Self.tinyNames.count + 1)
        #expect(try Checkpoint(file: dir.appendingPathComponent("weights.safetensors")).files.count == 1)
        // Two files and no index: ambiguous.
        try fm.copyItem(at: fixture("dtypes.safetensors"), to: dir.appendingPathComponent("other.safetensors"))
        guard case .noWeights(_, let detail)? = expectWeightsError(dir, { _ = try Checkpoint(directory: $0) }) else {
            Issue.record("expected .noWeights"); return
        }
        #expect(detail.contains("2 .safetensors files"))
        // model.safetensors wins over other files.
        try fm.copyItem(at: fixture("tiny_hub/model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        #expect(try Checkpoint(directory: dir).files[0].url.lastPathComponent == "model.safetensors")
        // Nothing at all.
        let emptyDir = try temporaryDirectory()
        defer { try? fm.removeItem(at: emptyDir) }
        guard case .noWeights? = expectWeightsError(emptyDir, { _ = try Checkpoint(directory: $0) }) else {
            Issue.record("expected .noWeights"); return
        }
        guard case .noWeights? = expectWeightsError(emptyDir.appendingPathComponent("missing"), { _ = try Checkpoint(directory: $0) }) else {
            Issue.record("expected .noWeights"); return
        }
    }

    @Test func missingShard() throws {
        let dir = try Self.copyFixture("tiny_sharded")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"))
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        guard case .missingShard(let index, let shard, let tensor)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(index.hasSuffix(Checkpoint.indexFileName))
        #expect(shard == "model-00002-of-00003.safetensors")
        #expect(!tensor.isEmpty && error!.description.contains(tensor))
    }

    @Test func tensorMissingFromItsShard() throws {
        let dir = try Self.copyFixture("tiny_sharded")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        try Self.editIndex(dir) { $0["language_model.model.layers.7.mlp.up_proj.weight"] = "model-00001-of-00003.safetensors" }
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        guard case .tensorMissingFromShard(_, let shard, let tensor)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(shard == "model-00001-of-00003.safetensors")
        #expect(tensor == "language_model.model.layers.7.mlp.up_proj.weight")
    }

    @Test func tensorMappedToTheWrongShard() throws {
        let dir = try Self.copyFixture("tiny_sharded")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        var moved = ""
        try Self.editIndex(dir) { map in
            let (name, shard) = map.sorted { $0.key < $1.key }.first { $0.value != "model-00003-of-00003.safetensors" }!
            moved = name
            map[name] = shard == "model-00001-of-00003.safetensors" ? "model-00002-of-00003.safetensors" : "model-00001-of-00003.safetensors"
        }
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        guard case .tensorMissingFromShard(_, _, let tensor)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(tensor == moved)
    }

    @Test func tensorNotInTheIndexIsAnError() throws {
        let dir = try Self.copyFixture("tiny_sharded")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        try Self.editIndex(dir) { $0["multi_modal_projector.linear.bias"] = nil }
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        guard case .unlistedTensor(_, _, let tensor)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(tensor == "multi_modal_projector.linear.bias")
    }

    static let badIndexes: [String] = [
        "{",
        "[]",
        "{\"metadata\": {}}",
        "{\"weight_map\": []}",
        "{\"weight_map\": {\"a\": 3}}",
        "{\"weight_map\": {\"a\": \"../tiny_hub/model.safetensors\"}}",
        "{\"weight_map\": {\"a\": \"/etc/passwd\"}}",
        "{\"weight_map\": {\"a\": \"..\"}}",
        "{\"weight_map\": {\"a\": \"\"}}",
        "{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}",
    ]

    @Test(arguments: badIndexes.indices)
    func malformedIndex(index: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(Self.badIndexes[index].utf8).write(to: dir.appendingPathComponent(Checkpoint.indexFileName))
        guard case .invalidIndex(let path, _)? = expectWeightsError(dir, { _ = try Checkpoint(directory: $0) }) else {
            Issue.record("expected .invalidIndex for \(Self.badIndexes[index])"); return
        }
        #expect(path.hasSuffix(Checkpoint.indexFileName))
    }

    @Test func collidingNamesAreAnError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Same file: 5.x and hub spelling of one tensor.
        try SafetensorsWriter.write([
            .f32("vision_tower.post_layernorm.weight", shape: [1], [1]),
            .f32("vision_tower.vision_model.post_layernorm.weight", shape: [1], [2]),
        ], to: dir.appendingPathComponent("model.safetensors"))
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        guard case .nameCollision(_, let canonical, let first, let second)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(canonical == "vision_tower.vision_model.post_layernorm.weight")
        #expect(Set([first, second]) == ["vision_tower.post_layernorm.weight", "vision_tower.vision_model.post_layernorm.weight"])

        // Across files: both tied-head spellings.
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        try SafetensorsWriter.write([.f32("lm_head.weight", shape: [1], [1])], to: a)
        try SafetensorsWriter.write([.f32("language_model.lm_head.weight", shape: [1], [1])], to: b)
        #expect {
            _ = try Checkpoint(directory: dir, files: [SafetensorsFile(contentsOf: a), SafetensorsFile(contentsOf: b)])
        } throws: { error in
            guard let e = error as? WeightsError, case .nameCollision(_, let canonical, let first, let second) = e else { return false }
            return canonical == TensorNames.lmHead && first.contains("a.safetensors") && second.contains("b.safetensors")
        }
    }

    @Test func brokenShardIsReportedByItsPath() throws {
        let dir = try Self.copyFixture("tiny_sharded")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let shard = dir.appendingPathComponent("model-00003-of-00003.safetensors")
        let bytes = try Data(contentsOf: shard)
        try bytes.prefix(bytes.count - 10).write(to: shard)
        let error = expectWeightsError(dir) { _ = try Checkpoint(directory: $0) }
        #expect(error?.path == shard.path)
        #expect(error?.tensor != nil)
    }
}
