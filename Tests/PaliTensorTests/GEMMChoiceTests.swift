// The measured kernel choice (`--gemm auto`): picking by total time, the cache kept per machine, and a
// cache that is corrupt or from another CPU measured again, never trusted.
import Foundation
import Testing
@testable import PaliTensor

private func temporaryCacheFile() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gemm-choice-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("gemm-choice.json")
}

@Test func choiceIsTheLeastTotalTimeOverTheBuckets() {
    // n·k = 1e6: a bucket of M rows costs 2·M·1e6 / rate flops. openblas wins M = 256 (most of the
    // work) and loses M = 1, yet its total is least; batch-invariant or own-only choices skip it.
    let e = GEMMChoice.Entry(n: 1000, k: 1000, precision: .f32, gflops: [
        .avx512: [1: 10, 8: 60, 64: 200, 256: 200],
        .openblas: [1: 5, 8: 50, 64: 250, 256: 400],
        .portable: [1: 10, 8: 30],   // pruned after M = 8: never chosen
    ])
    #expect(e.choice(batchInvariant: false) == .openblas)
    #expect(e.choice(batchInvariant: true) == .avx512)
    #expect(e.choice(batchInvariant: false, oursOnly: true) == .avx512)
    let slowBig = GEMMChoice.Entry(n: 1000, k: 1000, precision: .f32, gflops: [
        .avx512: [1: 10, 8: 60, 64: 200, 256: 200], .openblas: [1: 1, 8: 50, 64: 250, 256: 210],
    ])
    #expect(slowBig.choice(batchInvariant: false) == .avx512)   // 1.8 ms lost at M = 1 outweighs 0.1 ms won at M = 256
}

@Test func fixedPolicyFallsBackWhereItsKernelCannotServe() {
    #expect(GEMMPolicy.fixed(.openblas).kernel(n: 4, k: 4, precision: .bf16) == .best)
    #expect(GEMMPolicy.fixed(.openblas).kernel(n: 4, k: 4, precision: .f32) == .openblas)
    #expect(GEMMPolicy.fixed(.openblas).kernel(n: 4, k: 4, precision: .f32, rowLookups: true) == .best)
    #expect(GEMMPolicy(name: "auto", batchInvariant: true) == .auto(batchInvariant: true))
    #expect(GEMMPolicy(name: "avx2") == .fixed(.avx2) && GEMMPolicy(name: "mkl") == nil)
}

@Test func measuredChoiceIsCachedAndReadBack() throws {
    let file = try temporaryCacheFile()
    let first = GEMMChoice(cacheFile: file)
    let e = first.entry(n: 40, k: 24, precision: .f32)
    #expect(first.measurementCount == 1)
    // Every candidate this CPU has was timed at M = 1; our kernels at every bucket unless pruned.
    let candidates = GEMMKernel.allCases.filter { $0.isAvailable && $0.supports(.f32) }
    #expect(Set(e.gflops.keys) == Set(candidates))
    #expect(e.gflops.values.allSatisfy { $0[1] != nil && $0.values.allSatisfy { $0 > 0 && $0.isFinite } })
    #expect(candidates.contains(e.choice(batchInvariant: false)) && e.choice(batchInvariant: true).isBatchInvariant)

    let second = GEMMChoice(cacheFile: file)
    #expect(second.entry(n: 40, k: 24, precision: .f32) == decodedAgain(e))
    #expect(second.measurementCount == 0)
    // A shape not in the cache is measured and added beside the others.
    _ = second.entry(n: 24, k: 40, precision: .bf16)
    #expect(second.measurementCount == 1)
    let third = GEMMChoice(cacheFile: file)
    _ = third.entry(n: 40, k: 24, precision: .f32)
    _ = third.entry(n: 24, k: 40, precision: .bf16)
    #expect(third.measurementCount == 0)
}

/// The entry as the cache file keeps it (rates rounded to 2 decimals).
private func decodedAgain(_ e: GEMMChoice.Entry) -> GEMMChoice.Entry {
    let text = GEMMChoice.encode([e], machine: .current)
    return try! GEMMChoice.decode(Data(text.utf8), machine: .current).values.first!
}

/// How many shapes a fresh reader of `file` (on `machine`) measures when asked for one [16, 8] F32 weight.
private func measurementsAskingOnce(_ file: URL, on machine: GEMMChoice.Machine = .current) -> Int {
    let choice = GEMMChoice(cacheFile: file, machine: machine)
    _ = choice.entry(n: 16, k: 8, precision: .f32)
    return choice.measurementCount
}

@Test func corruptCacheIsMeasuredAgainAndRewritten() throws {
    let file = try temporaryCacheFile()
    for junk in ["{\"format\": 1, \"machine\": ", "not json", "{\"format\": 2}", "[]"] {
        try Data(junk.utf8).write(to: file)
        #expect(measurementsAskingOnce(file) == 1, "cache '\(junk)'")
        #expect(measurementsAskingOnce(file) == 0)   // rewritten whole and valid
    }
    // A rate that is not a positive number is corruption too.
    var text = try String(contentsOf: file, encoding: .utf8)
    let rate = try #require(text.range(of: #""1": [0-9.]+"#, options: .regularExpression))
    text.replaceSubrange(rate, with: "\"1\": -3")
    try Data(text.utf8).write(to: file)
    #expect(measurementsAskingOnce(file) == 1)
}

@Test func cacheFromAnotherCPUOrBuildIsMeasuredAgain() throws {
    let file = try temporaryCacheFile()
    var others: [GEMMChoice.Machine] = []
    for change in 0..<5 {
        var m = GEMMChoice.Machine.current
        switch change {
        case 0: m.cpu = m.cpu.hasPrefix("AMD EPYC 9B45") ? "Intel Xeon (family 6 model 106 stepping 6)" : "AMD EPYC 9B45 (family 26 model 2 stepping 1)"
        // Differs from this machine's features whatever they are (an AVX2-only CPU has exactly "avx2 fma").
        case 1: m.features = m.features == "avx2 fma" ? "avx512f avx2 fma" : "avx2 fma"
        case 2: m.openblas = "OpenBLAS 0.3.28 DYNAMIC_ARCH SkylakeX"
        case 3: m.onednn = m.onednn.isEmpty ? "oneDNN 3.5.0" : ""
        default: m.kernels += 1
        }
        others.append(m)
    }
    for other in others {
        try? FileManager.default.removeItem(at: file)
        #expect(measurementsAskingOnce(file, on: other) == 1)
        #expect(measurementsAskingOnce(file) == 1, "a cache from \(other) was trusted")
        #expect(measurementsAskingOnce(file) == 0)   // …and it rewrote the file for this machine
    }
}

@Test func noCacheFileStillChooses() {
    let choice = GEMMChoice(cacheFile: nil)
    let kernel = choice.entry(n: 8, k: 8, precision: .bf16).choice(batchInvariant: true)
    #expect(kernel.isAvailable && kernel.supports(.bf16))
}
