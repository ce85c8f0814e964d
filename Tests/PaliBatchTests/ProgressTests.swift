// Progress lines on a terminal and in logs, with an injected clock and writer.
import Testing
@testable import PaliBatch

/// Collects what the reporter writes; the clock is advanced by hand.
private final class Capture: @unchecked Sendable {
    var written: [String] = []
    var now = 1000.0
}

@Test func terminalRewritesOneLineAtMostFiveTimesASecond() {
    let capture = Capture()
    let progress = ProgressReporter(total: 100, alreadyDone: 20, isTerminal: true,
                                    output: { capture.written.append($0) }, clock: { capture.now })
    capture.now += 10
    progress.update(done: 20, errors: 1, generatedTokens: 400)
    #expect(capture.written == ["\r40/100 (40.0%) | 1 error | 2.00 images/s | 40.0 tokens/s | ETA 30s\u{1B}[K"])
    capture.now += 0.1
    progress.update(done: 21, errors: 1, generatedTokens: 420)
    #expect(capture.written.count == 1)                      // too soon: skipped
    capture.now += 0.1
    progress.update(done: 22, errors: 2, generatedTokens: 440)
    #expect(capture.written.count == 2)
    #expect(capture.written[1].hasPrefix("\r42/100 (42.0%) | 2 errors | "))
    capture.now = 1050
    progress.finish()
    #expect(capture.written.last == "\r42/100 (42.0%) | 2 errors | 0.44 images/s | 8.8 tokens/s | ETA 2m12s\u{1B}[K\n")
    progress.finish()
    progress.update(done: 50, errors: 2, generatedTokens: 900)
    #expect(capture.written.count == 3)                      // nothing after finish
}

@Test func logModePrintsEveryIntervalAndAtTheEnd() {
    let capture = Capture()
    let progress = ProgressReporter(total: nil, alreadyDone: 0, isTerminal: false, interval: 30,
                                    output: { capture.written.append($0) }, clock: { capture.now })
    for second in stride(from: 5.0, through: 95, by: 5) {
        capture.now = 1000 + second
        progress.update(done: Int(second), errors: 0, generatedTokens: Int(second) * 10)
    }
    // At 30, 60 and 90 s.
    #expect(capture.written == [
        "progress 30 done | 0 errors | 1.00 images/s | 10.0 tokens/s | elapsed 30s\n",
        "progress 60 done | 0 errors | 1.00 images/s | 10.0 tokens/s | elapsed 1m00s\n",
        "progress 90 done | 0 errors | 1.00 images/s | 10.0 tokens/s | elapsed 1m30s\n",
    ])
    capture.now = 1100
    progress.finish()
    #expect(capture.written.last == "done 95 done | 0 errors | 0.95 images/s | 9.5 tokens/s | elapsed 1m40s\n")
}

@Test func etaIsUnknownBeforeAnyRecordAndZeroAtTheEnd() {
    let capture = Capture()
    let progress = ProgressReporter(total: 10, alreadyDone: 10, isTerminal: false, interval: 1,
                                    output: { capture.written.append($0) }, clock: { capture.now })
    capture.now += 2
    progress.update(done: 0, errors: 0, generatedTokens: 0)
    #expect(capture.written == ["progress 10/10 (100.0%) | 0 errors | 0.00 images/s | 0.0 tokens/s | ETA 0s | elapsed 2s\n"])

    let fresh = ProgressReporter(total: 10, alreadyDone: 0, isTerminal: true,
                                 output: { capture.written.append($0) }, clock: { capture.now })
    fresh.update(done: 0, errors: 0, generatedTokens: 0)
    #expect(capture.written.last?.contains("ETA --") == true)
}

@Test func durations() {
    #expect(ProgressReporter.duration(0) == "0s")
    #expect(ProgressReporter.duration(59.4) == "59s")
    #expect(ProgressReporter.duration(303) == "5m03s")
    #expect(ProgressReporter.duration(7500) == "2h05m")
    #expect(ProgressReporter.duration(.infinity) == "--")
}
