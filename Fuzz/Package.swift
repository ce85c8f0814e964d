// swift-tools-version:5.10
// libFuzzer targets for paligemma-swift's parsers (docs/fuzzing.md). A package of its own so the main
// `swift build` / `swift test` never see them; build and run with Launch/fuzz.sh, which passes
// `--sanitize=fuzzer --sanitize=address` (every module, the parsers included, gets coverage and ASan).
// Each target is one function, LLVMFuzzerTestOneInput, calling the project's public entry points.
import PackageDescription

let pali = "paligemma-swift"

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(name: "fuzz-" + name,
                      dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: pali) })
}

let package = Package(
    name: "paligemma-fuzz",
    dependencies: [.package(name: pali, path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        fuzzTarget("safetensors", ["PaliWeights"]),
        fuzzTarget("config", ["PaliWeights"]),
        fuzzTarget("tokenizer", ["PaliTokenizer"]),
        fuzzTarget("manifest-jsonl", ["PaliBatch"]),
        fuzzTarget("manifest-csv", ["PaliBatch"]),
        fuzzTarget("wire", ["PaliPipeline"]),
        fuzzTarget("npz", ["PaliWeights"]),
        fuzzTarget("image", ["PaliImage"]),
    ]
)
