// `paligemma run` records carry transformers' scores: `logprob` (greedy: Σ of the tokens' log-probs;
// --beams N: the beam's sequence score) and, with --token-logprobs, `token_logprobs`; with --beams N the
// tokens are transformers' num_beams = N answer. Expected values: Tests/Fixtures/scores/goldens.json
// (Tests/Oracle/make_score_goldens.py). In one process, and under mpirun with two decoder stages (the beams
// of a job travel together through both).
import Foundation
import Testing

private struct ScoreCase: Decodable {
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

private struct ScoreFile: Decodable { let cases: [ScoreCase] }

@Suite(.serialized)
struct ScoreRunTests {
    /// np, model (repository-relative), beams, max tokens, extra arguments.
    @Test(arguments: [(1, "models/paligemma-shapes", 1, 40, ""), (1, "models/paligemma-shapes", 4, 40, ""),
                      (1, "Tests/Fixtures/models/pg2-softcap", 3, 12, "--micro-batch-size 7"),
                      (4, "Tests/Fixtures/models/pg2-softcap", 3, 12, "--stages 2"),
                      (4, "models/paligemma-shapes", 2, 40, "--stages 2 --micro-batch-size 3")])
    func recordsCarryTransformersScores(np: Int, modelPath: String, beams: Int, maxTokens: Int, extra: String) throws {
        try #require(np == 1 || RunJobTests.hasMPI, "mpirun is not installed")
        let goldens = try JSONDecoder().decode(ScoreFile.self, from: Data(contentsOf: fixtures.appendingPathComponent("scores/goldens.json")))
        let cases = goldens.cases.filter {
            $0.model == modelPath && $0.beams == beams && $0.eos_token_id == [1] && $0.max_new_tokens == maxTokens
        }
        try #require(cases.count >= 2, "\(modelPath) beams \(beams): \(cases.count) golden cases")
        let ws = try Workspace()
        defer { ws.remove() }
        // Each case three times: several beam searches share micro-batches and the slots turn over.
        var expected: [String: ScoreCase] = [:]
        var lines: [[String: Any]] = []
        for copy in 0..<3 {
            for (k, c) in cases.enumerated() {
                let id = "c\(k)-\(copy)"
                expected[id] = c
                lines.append(["id": id, "image": repository.appendingPathComponent(c.image).path, "prompt": c.prompt])
            }
        }
        try ws.write(lines)
        var arguments = ["--model", repository.appendingPathComponent(modelPath).path, "--manifest", ws.manifest.path,
                         "--output-dir", ws.output.path, "--max-tokens", "\(maxTokens)", "--token-logprobs"]
        if beams > 1 { arguments += ["--beams", "\(beams)"] }
        let outcome = try Job(np: np, arguments: arguments + extra.split(separator: " ").map(String.init)).wait(timeout: 300)
        #expect(outcome.status == 0, "exit \(outcome.status)\n\(outcome.output)")
        let records = try ws.records()
        #expect(records.count == lines.count)
        for record in records {
            let id = record["id"] as! String
            let c = expected[id]!
            let label = "np \(np) \(modelPath) beams \(beams) \(id) '\(c.prompt)'"
            #expect(record["status"] as? String == "ok", "\(label): \(record)")
            #expect(record["tokens"] as? [Int] == c.tokens, "\(label): tokens")
            let logprob = record["logprob"] as? Double
            #expect(logprob.map { abs($0 - c.logprob) <= 1e-4 } == true, "\(label): logprob \(String(describing: logprob)) vs \(c.logprob)")
            let perToken = record["token_logprobs"] as? [Double] ?? []
            #expect(perToken.count == c.token_logprobs.count, "\(label): token_logprobs \(perToken)")
            let worst = zip(perToken, c.token_logprobs).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4, "\(label): token log-probs differ by \(worst)")
        }
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: ws.output.appendingPathComponent("run.json"))) as! [String: Any]
        let settings = info["settings"] as! [String: Any]
        #expect(settings["beams"] as? Int == (beams > 1 ? beams : nil), "run.json names the beams: \(settings)")
        #expect(settings["token_logprobs"] as? Bool == true)
    }

    /// Without --token-logprobs a record has `logprob` and no `token_logprobs`; error records have neither;
    /// a resume with other --beams is refused.
    @Test func logprobIsAlwaysWrittenAndBeamsAreAResultSetting() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3) + [["id": "missing", "image": "images/nope.jpg", "prompt": "caption en"]])
        let base = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                    "--max-tokens", "4"]
        let first = try Job(np: 1, arguments: base).wait()
        #expect(first.status == 0, "\(first.output)")
        for record in try ws.records() {
            let ok = record["status"] as? String == "ok"
            #expect((record["logprob"] as? Double).map { $0 < 0 } == (ok ? true : nil), "\(record)")
            #expect(record["token_logprobs"] == nil, "\(record)")
        }
        let refused = try Job(np: 1, arguments: base + ["--beams", "2"]).wait()
        #expect(refused.status != 0)
        #expect(refused.output.contains("beams: absent in the earlier run, 2 now"), "\(refused.output)")
    }

    /// `generate --json` prints `logprob` (and `token_logprobs` with --token-logprobs); with --beams N the
    /// answer is transformers' num_beams = N one. Bad combinations are refused before any work.
    @Test func generatePrintsTransformersScores() throws {
        let goldens = try JSONDecoder().decode(ScoreFile.self, from: Data(contentsOf: fixtures.appendingPathComponent("scores/goldens.json")))
        let picked = goldens.cases.filter { $0.model == "Tests/Fixtures/models/pg1-mqa" && $0.eos_token_id == [1] && $0.prompt == "detect red circle" }
        try #require(picked.contains { $0.beams == 1 } && picked.contains { $0.beams == 3 })
        for c in picked {
            let path = repository.appendingPathComponent(c.model).path
            let out = try Tool.run(["generate", "--model", path, "--image", repository.appendingPathComponent(c.image).path,
                                    "--prompt", c.prompt, "--max-tokens", "\(c.max_new_tokens)", "--beams", "\(c.beams)",
                                    "--json", "--token-logprobs"])
            #expect(out.status == 0, "\(out.stderr)")
            let line = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            #expect(line?["tokens"] as? [Int] == c.tokens, "beams \(c.beams): tokens")
            let logprob = line?["logprob"] as? Double
            #expect(logprob.map { abs($0 - c.logprob) <= 1e-4 } == true, "beams \(c.beams): \(String(describing: logprob)) vs \(c.logprob)")
            let perToken = line?["token_logprobs"] as? [Double] ?? []
            #expect(perToken.count == c.tokens.count && zip(perToken, c.token_logprobs).allSatisfy { abs($0 - $1) <= 1e-4 },
                    "beams \(c.beams): \(perToken)")
        }
        let image = repository.appendingPathComponent("Tests/Fixtures/models/pg1-mqa/image.png").path
        for (extra, words) in [(["--beams", "2", "--temperature", "0.7"], "leave out --temperature"),
                               (["--beams", "0"], "--beams must be between 1 and 64"),
                               (["--token-logprobs"], "give --json too")] {
            let out = try Tool.run(["generate", "--model", model("pg1-mqa").path, "--image", image, "--prompt", "caption en"] + extra)
            #expect(out.status != 0 && out.stderr.contains(words), "\(extra): \(out.stderr)")
        }
    }
}
