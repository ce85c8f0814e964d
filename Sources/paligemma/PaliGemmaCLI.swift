// The `paligemma` command line: one file per subcommand.
import ArgumentParser

@main
struct PaliGemmaCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paligemma",
        abstract: "PaliGemma inference on CPU: single images, batch jobs under mpirun, benchmarks.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, TokenizeCommand.self, PreprocessCommand.self,
                      BenchCommand.self, RunCommand.self, MaskCommand.self, ReportCommand.self])
}
