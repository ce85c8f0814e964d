import ArgumentParser

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text with a SentencePiece tokenizer.model and print {\"ids\", \"text\"} as JSON.")

    func run() throws {
        throw ValidationError("not implemented yet")
    }
}
