import ArgumentParser

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Decode, resize and normalise an image into pixel_values [3, N, N] (safetensors).")

    func run() throws {
        throw ValidationError("not implemented yet")
    }
}
