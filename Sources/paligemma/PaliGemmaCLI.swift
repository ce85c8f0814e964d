// The `paligemma` command line: one file per subcommand.
import ArgumentParser

@main
struct PaliGemmaCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paligemma",
        abstract: "PaliGemma inference on CPU: single images, batch jobs under mpirun, benchmarks.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, TokenizeCommand.self, PreprocessCommand.self,
                      BenchCommand.self, RunCommand.self, MaskCommand.self, ReportCommand.self, QuantizeCommand.self])

    static func main() {
        StandardErrorLogHandler.bootstrap()
        main(EmptyOptionValues.rewrite(Array(CommandLine.arguments.dropFirst())))
    }
}

/// `--prompt=` (what `--prompt="$P"` gives when P is empty) means the empty prompt, as `--prompt ""` does.
/// swift-argument-parser reads `--name=` as a missing value, so before parsing, `--name=` becomes
/// `--name ""` for the options below: those whose empty value is legal (the empty prompt is a valid
/// PaliGemma prefix; the empty text tokenizes to no ids). Other options keep the parser's "Missing value".
/// Nothing after `--` is touched.
enum EmptyOptionValues {
    /// String options where "" is a legal value: `--prompt` (generate, logits, run) and `--text` (tokenize).
    static let names: Set<String> = ["--prompt", "--text"]

    static func rewrite(_ arguments: [String]) -> [String] {
        var out: [String] = []
        out.reserveCapacity(arguments.count + 1)
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "--" {
                out.append(argument)
                out.append(contentsOf: rest)
                break
            }
            if argument.hasSuffix("="), names.contains(String(argument.dropLast())) {
                out.append(String(argument.dropLast()))
                out.append("")
            } else {
                out.append(argument)
            }
        }
        return out
    }
}
