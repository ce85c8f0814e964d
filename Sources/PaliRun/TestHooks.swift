// TEST-ONLY hooks: environment variables that make a rank slow on purpose, so the tests can check that
// failure detection never mistakes loading or work for death (RunJobTests). They are not settings for
// real runs; unset (the normal case) they cost one environment read at start and nothing after.
//
//   PALIGEMMA_TEST_SLOW_LOAD=SECONDS    every rank's load takes SECONDS longer: the coordinator sleeps
//                                       right after it has read the model bundle (config + tokenizer),
//                                       vision ranks and decoder stages right after loading their weights.
//   PALIGEMMA_TEST_SLOW_VISION=SECONDS  a vision rank sleeps SECONDS in every batch it encodes.
//   PALIGEMMA_TEST_FAIL_RANK=N          worker rank N fails right after loading its weights, as a worker
//                                       that lost a peer does: it reports to the coordinator, which
//                                       writes stats.json ("failed", the reason) and ends the job.
import Foundation

enum TestHooks {
    /// PALIGEMMA_TEST_SLOW_LOAD (seconds; 0 when unset or not a positive number).
    static let slowLoad = seconds("PALIGEMMA_TEST_SLOW_LOAD")
    /// PALIGEMMA_TEST_SLOW_VISION (seconds; 0 when unset or not a positive number).
    static let slowVision = seconds("PALIGEMMA_TEST_SLOW_VISION")

    /// PALIGEMMA_TEST_FAIL_RANK (a worker rank; nil when unset or not a number above 0).
    static let failRank: Int? = {
        guard let text = ProcessInfo.processInfo.environment["PALIGEMMA_TEST_FAIL_RANK"], let rank = Int(text),
              rank > 0 else { return nil }
        return rank
    }()

    /// Throws, as a worker that cannot go on, when `rank` is PALIGEMMA_TEST_FAIL_RANK.
    static func failIfAsked(rank: Int) throws {
        if rank == failRank { throw RunError.peer("PALIGEMMA_TEST_FAIL_RANK=\(rank): this worker fails on purpose (a test)") }
    }

    private static func seconds(_ name: String) -> Double {
        guard let text = ProcessInfo.processInfo.environment[name], let value = Double(text), value > 0,
              value.isFinite else { return 0 }
        return value
    }

    /// Sleeps `seconds` (a test hook's value); returns at once when it is 0.
    static func pause(_ seconds: Double) {
        if seconds > 0 { Thread.sleep(forTimeInterval: seconds) }
    }
}
