// `paligemma run --shards`: WebDataset tar shards made here (plain and gzip tars with jpg, png, json and
// txt members, a corrupt image, a webp, two images under one key, a truncated shard), run alone and under
// mpirun. Every (sample, prompt) becomes one record in the output shard named after its input shard,
// the json member's fields are carried under "source", bad samples become error records, a SIGKILL and
// rerun leave each record exactly once, and three prompts per image cost one vision pass per image
// while giving the tokens that generating each (image, prompt) alone gives.
import Foundation
import Testing

/// A tar of `members` (name, bytes), in that order, made with the system tar.
private func makeTar(_ url: URL, _ members: [(String, Data)], gzip: Bool = false) throws {
    let staging = url.deletingLastPathComponent().appendingPathComponent(".staging-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: staging) }
    for (name, bytes) in members { try bytes.write(to: staging.appendingPathComponent(name)) }
    let tar = Process()
    tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    tar.arguments = ["tar", "--format=ustar", gzip ? "-czf" : "-cf", url.path, "-C", staging.path] + members.map(\.0)
    try tar.run()
    tar.waitUntilExit()
    try #require(tar.terminationStatus == 0, "tar failed")
}

/// A WebDataset in a scratch folder.
private struct Dataset {
    let root: URL
    var data: URL { root.appendingPathComponent("data") }
    var output: URL { root.appendingPathComponent("out") }
    /// Sample id → the fixture image it holds, for the samples that should run.
    var good: [String: String] = [:]
    /// Sample id → the error kind its records must have.
    var bad: [String: String] = [:]
    /// Sample id → its json member's "n".
    var numbers: [String: Int] = [:]

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("paligemma-wds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    static func image(_ name: String) throws -> Data {
        try Data(contentsOf: fixtures.appendingPathComponent("images/sources/\(name)"))
    }

    static func json(_ n: Int, prompt: String) -> Data { Data(#"{"n": \#(n), "q": "\#(prompt)", "lang": "en"}"#.utf8) }

    /// Three shards: 00000.tar, 00001.tar.gz, 00002.tar (truncated inside its last sample's image).
    static func small() throws -> Dataset {
        var ds = try Dataset()
        var n = 0
        func sample(_ shard: String, _ key: String, image: (String, String)?, extra: [(String, Data)] = [],
                    json: Bool = true) throws -> [(String, Data)] {
            var members: [(String, Data)] = []
            if let (ext, fixture) = image {
                members.append(("\(key).\(ext)", try fixture.hasPrefix("!") ? Data(fixture.utf8) : Dataset.image(fixture)))
                if !fixture.hasPrefix("!") { ds.good["\(shard)/\(key)"] = fixture }
            }
            if json {
                members.append(("\(key).json", Dataset.json(n, prompt: "caption en")))
                ds.numbers["\(shard)/\(key)"] = n
                n += 1
            }
            return members + extra
        }
        let shard0 = try sample("00000", "000000017", image: ("jpg", "jpeg_420_baseline.jpg"), extra: [("000000017.txt", Data("a caption".utf8))])
            + sample("00000", "000000018", image: ("png", "png_rgb8_56.png"))
            + sample("00000", "000000019", image: ("jpg", "!this is not a jpeg"))
            + sample("00000", "000000020", image: ("webp", "!RIFF....WEBP"))
        ds.bad["00000/000000019"] = "unreadable_image"
        ds.bad["00000/000000020"] = "bad_sample"
        try makeTar(ds.data.appendingPathComponent("00000.tar"), shard0)
        let shard1 = try sample("00001", "a", image: ("png", "png_gray8.png"), extra: [("a.txt", Data("gray".utf8))])
            + sample("00001", "b", image: ("jpg", "jpeg_422_progressive.jpg"))
            + sample("00001", "c", image: ("jpg", "jpeg_420_baseline.jpg"), extra: [("c.png", try Dataset.image("png_gray8.png"))])
        ds.good["00001/c"] = nil
        ds.bad["00001/c"] = "bad_sample"
        try makeTar(ds.data.appendingPathComponent("00001.tar.gz"), shard1, gzip: true)
        let shard2 = try sample("00002", "x", image: ("jpg", "jpeg_cmyk_adobe.jpg"))
            + sample("00002", "y", image: ("png", "png_rgb8_56.png"), json: false)
            + sample("00002", "z", image: ("jpg", "jpeg_422_progressive.jpg"))
        ds.good["00002/z"] = nil
        ds.bad["00002/z"] = "corrupt_shard"
        let full = ds.data.appendingPathComponent("full.tar")
        try makeTar(full, shard2)
        // Cut 100 bytes into z.jpg's data (each member: a 512-byte header, its data padded to 512).
        let whole = try Data(contentsOf: full)
        let before = shard2.dropLast(2).map { 512 + ($0.1.count + 511) / 512 * 512 }.reduce(0, +)
        try whole.prefix(before + 512 + 100).write(to: ds.data.appendingPathComponent("00002.tar"))
        ds.numbers["00002/z"] = nil   // its json member is lost with the rest of the shard
        try FileManager.default.removeItem(at: full)
        return ds
    }

    /// Records of every output shard, by file name.
    func shards() throws -> [String: [[String: Any]]] {
        let names = try FileManager.default.contentsOfDirectory(atPath: output.path).filter { $0.hasSuffix(".jsonl") }
        var out: [String: [[String: Any]]] = [:]
        for name in names {
            let text = try String(contentsOf: output.appendingPathComponent(name), encoding: .utf8)
            out[name] = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        return out
    }

    func stats() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("stats.json"))) as! [String: Any]
    }
}

/// The prompts and the bigger dataset of the tests below.
private enum WDS {
    static let prompts = ["caption en", "detect red circle ; blue square", "answer en what is it?"]

    static let shardCount = 5, perShard = 30

    /// `shardCount` shards of `perShard` good samples (00003 gzip), listed in shards.txt; the arguments
    /// of a run with each sample's prompt from its json member.
    static func bigger(_ ds: Dataset) throws -> [String] {
        let images = ["jpeg_420_baseline.jpg", "png_rgb8_56.png", "jpeg_422_progressive.jpg", "png_gray8.png"]
        for s in 0..<shardCount {
            var members: [(String, Data)] = []
            for k in 0..<perShard {
                let image = images[(s + k) % images.count]
                let key = String(format: "%06d", k)
                members.append(("\(key).\(image.hasSuffix(".png") ? "png" : "jpg")", try Dataset.image(image)))
                members.append(("\(key).json", Dataset.json(s * perShard + k, prompt: k % 2 == 0 ? "caption en" : "detect circle")))
            }
            try makeTar(ds.data.appendingPathComponent(String(format: "%05d.tar", s) + (s == 3 ? ".gz" : "")), members,
                        gzip: s == 3)
        }
        let list = ds.root.appendingPathComponent("shards.txt")
        try Data((0..<shardCount).map { String(format: "data/%05d.tar%@", $0, $0 == 3 ? ".gz" : "") }.joined(separator: "\n").utf8)
            .write(to: list)
        return ["--model", model("pg1-mqa").path, "--shards", list.path, "--prompt-field", "q",
                "--output-dir", ds.output.path, "--max-tokens", "6", "--threads", "1"]
    }

    /// Checks that the output shards of `bigger` hold each sample exactly once, in the shard named after
    /// its input, with its prompt from the json member.
    static func checkEachSampleOnce(_ ds: Dataset) throws {
        let all = try ds.shards()
        var ids: [String] = []
        for (name, records) in all {
            for record in records {
                let id = record["id"] as! String
                ids.append(id)
                #expect(id.hasPrefix(name.prefix(5) + "/"), "\(id) in \(name)")
                #expect(record["status"] as? String == "ok", "\(record)")
                #expect(record["prompt_index"] == nil, "one prompt per sample: no prompt_index")
                let n = (record["source"] as? [String: Any])?["n"] as? Int
                #expect(n.map { record["prompt"] as? String == ($0 % perShard % 2 == 0 ? "caption en" : "detect circle") } == true)
            }
        }
        #expect(ids.count == shardCount * perShard && Set(ids).count == ids.count, "each sample exactly once")
    }

}

// In RunJobTests' serialized suite: these mpirun jobs run one at a time with the other run tests, not
// beside them (the machine's load stays what it was).
extension RunJobTests {
    /// np 1 with a list file of the shards; np 3 under mpirun with a brace pattern.
    @Test(arguments: [1, 3])
    func everySampleOncePerPromptInShardsNamedAfterTheInputs(np: Int) throws {
        try #require(np == 1 || Self.hasMPI, "mpirun is not installed")
        let ds = try Dataset.small()
        defer { ds.remove() }
        let pattern: String
        if np == 1 {
            let list = ds.root.appendingPathComponent("shards.txt")
            try Data("data/00000.tar\ndata/00001.tar.gz\ndata/00002.tar\n".utf8).write(to: list)
            pattern = list.path
        } else {
            pattern = ds.data.path + "/{00000.tar,00001.tar.gz,00002.tar}"
        }
        let maxTokens = 8
        let outcome = try Job(np: np, arguments: ["--model", model("pg1-mqa").path, "--shards", pattern,
                                                  "--output-dir", ds.output.path, "--max-tokens", "\(maxTokens)",
                                                  "--vision-batch", "2"] + WDS.prompts.flatMap { ["--prompt", $0] })
            .wait(timeout: 180)
        #expect(outcome.status == 0, "np \(np): exit \(outcome.status)\n\(outcome.output)")
        let shards = try ds.shards()
        #expect(Set(shards.keys) == ["00000.jsonl", "00001.jsonl", "00002.jsonl"], "\(shards.keys.sorted())")
        var seen: [String: Int] = [:]
        for (name, records) in shards {
            for record in records {
                let id = record["id"] as! String
                #expect(id.hasPrefix(name.dropLast(".jsonl".count) + "/"), "\(id) in \(name)")
                let index = try #require(record["prompt_index"] as? Int, "\(id): prompt_index")
                #expect(record["prompt"] as? String == WDS.prompts[index])
                seen["\(id)#\(index)", default: 0] += 1
                let source = record["source"] as? [String: Any]
                #expect(source?["n"] as? Int == ds.numbers[id], "\(id): source carried")
                #expect(source?["lang"] as? String == (ds.numbers[id] == nil ? nil : "en"))
                if let kind = ds.bad[id] {
                    #expect(record["status"] as? String == "error", "\(id)")
                    #expect((record["error"] as? [String: Any])?["kind"] as? String == kind, "\(id): \(record)")
                } else {
                    #expect(record["status"] as? String == "ok", "\(id): \(record)")
                }
            }
        }
        let samples = Set(ds.good.keys).union(ds.bad.keys)
        let expected = Set(samples.flatMap { id in WDS.prompts.indices.map { "\(id)#\($0)" } })
        #expect(Set(seen.keys) == expected && seen.values.allSatisfy { $0 == 1 }, "each (sample, prompt) exactly once")

        // The tokens of each (image, prompt) generated alone.
        let jobs = ds.good.flatMap { id, image in
            WDS.prompts.indices.map { ["id": "\(id)#\($0)", "image": "images/sources/\(image)", "prompt": WDS.prompts[$0]] as [String: Any] }
        }
        let alone = try expectedTokens(model: model("pg1-mqa"), jobs: jobs, root: fixtures, maxTokens: maxTokens)
        for record in shards.values.joined() where record["status"] as? String == "ok" {
            let key = "\(record["id"] as! String)#\(record["prompt_index"] as! Int)"
            #expect(record["tokens"] as? [Int] == alone[key], "\(key): the tokens of generating it alone")
        }
        // One vision pass per image that decodes, not one per prompt.
        let stats = try ds.stats()
        #expect(stats["vision_images"] as? Int == ds.good.count, "vision passes: \(stats["vision_images"] ?? "none")")
        #expect((stats["records"] as? [String: Any])?["ok"] as? Int == ds.good.count * WDS.prompts.count)
    }

    /// A bigger dataset with the prompt from each sample's json member; killed once an output shard is
    /// published, then rerun: each sample exactly once, the published shards untouched.
    @Test(arguments: [1, 3])
    func sigkillThenRerunGivesEachSampleOnce(np: Int) throws {
        try #require(np == 1 || Self.hasMPI, "mpirun is not installed")
        let ds = try Dataset()
        defer { ds.remove() }
        let shardCount = WDS.shardCount, perShard = WDS.perShard
        let arguments = try WDS.bigger(ds)
        let first = try Job(np: np, arguments: arguments)
        let deadline = Date().addingTimeInterval(120)
        func published() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: ds.output.path)) ?? []).filter { $0.hasSuffix(".jsonl") && !$0.hasPrefix(".") }
        }
        while Date() < deadline, first.process.isRunning, published().isEmpty { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.1)
        #expect(first.process.isRunning, "the first run ended before it could be killed; use more samples")
        first.signalEveryRank(SIGKILL)
        #expect(first.wait(timeout: 30).status != 0)
        let kept = try ds.shards()
        let keptCount = kept.values.map(\.count).reduce(0, +)
        #expect(keptCount > 0 && keptCount < shardCount * perShard, "the kill came mid-job (\(keptCount) records kept)")

        let second = try Job(np: np, arguments: arguments).wait(timeout: 180)
        #expect(second.status == 0, "rerun: \(second.output)")
        let all = try ds.shards()
        #expect(Set(all.keys) == Set((0..<shardCount).map { String(format: "%05d.jsonl", $0) }), "\(all.keys.sorted())")
        for (name, records) in kept { #expect(all[name]?.count == records.count, "\(name) untouched") }
        try WDS.checkEachSampleOnce(ds)
        #expect(second.output.contains("resuming: \(keptCount) records"))
    }

    /// SIGTERM at np 1 once an output shard is out: the half-done input shards are published as parts,
    /// the rerun adds the rest, and each sample is in exactly one file of its input shard.
    @Test func sigtermPublishesPartsAndTheRerunCompletesThem() throws {
        let ds = try Dataset()
        defer { ds.remove() }
        let arguments = try WDS.bigger(ds)
        let first = try Job(np: 1, arguments: arguments)
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, first.process.isRunning, (try? ds.shards())?.isEmpty ?? true { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.05)
        try #require(first.process.isRunning, "the first run ended before the signal; use more samples")
        _ = kill(first.process.processIdentifier, SIGTERM)
        let stopped = first.wait(timeout: 30)
        #expect(stopped.status == 143, "exit \(stopped.status)\n\(stopped.output)")
        #expect(try ds.stats()["outcome"] as? String == "interrupted")
        let kept = try ds.shards()
        let names = kept.keys.sorted()
        #expect(names.allSatisfy { $0.range(of: #"^\d{5}(\.part-\d{5})?\.jsonl$"#, options: .regularExpression) != nil }, "\(names)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: ds.output.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty, "every half-done shard was published: \(leftovers)")

        let second = try Job(np: 1, arguments: arguments).wait(timeout: 180)
        #expect(second.status == 0, "rerun: \(second.output)")
        let all = try ds.shards()
        for (name, records) in kept { #expect(all[name]?.count == records.count, "\(name) untouched") }
        for name in names where name.contains(".part-") {
            #expect(all[String(name.prefix(5)) + ".jsonl"] != nil, "the rest of \(name.prefix(5)) is published whole-named")
        }
        try WDS.checkEachSampleOnce(ds)
    }
}
