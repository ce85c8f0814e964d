// A vision rank: jobs in (image path or bytes + prompt ids), image embeddings out to decoder stage 0 of its
// replica. An image with several prompts is encoded once; its embeddings go to stage 0 once per prompt. Images waiting together are encoded in one batched forward (up to `visionBatch`). A file
// that is missing, undecodable or over the pixel budget becomes an error result sent straight to the
// coordinator; the rank goes on.
import Foundation
import PaliBatch
import PaliGeneration
import PaliImage
import PaliModels
import PaliPipeline
import PaliTensor
import PaliWeights

final class VisionWorker {
    let context: RankContext
    let tower: SiglipVisionTower
    let projector: Projector
    let preprocessor: ImagePreprocessor
    let decoder: ImageDecoder
    let imageSize: Int
    let textWidth: Int
    let stage0: Int
    let visionBatch: Int
    private var queue: [JobMessage] = []
    private var images = 0
    private var errors = 0

    init(context: RankContext, bundle: ModelBundle, checkpoint: Checkpoint, maxPixels: Int, visionBatch: Int) throws {
        self.context = context
        let hyper = bundle.hyper
        tower = try SiglipVisionTower(hyper: hyper.vision, weights: checkpoint)
        projector = try Projector(visionWidth: hyper.vision.width, textWidth: hyper.decoder.width, weights: checkpoint)
        preprocessor = ImagePreprocessor(configuration: try processorConfiguration(bundle))
        decoder = ImageDecoder(maxPixels: maxPixels)
        imageSize = hyper.vision.imageSize
        textWidth = hyper.decoder.width
        guard case .vision(let replica, _) = context.role else { preconditionFailure("not a vision rank") }
        stage0 = context.layout.rank(of: .stage(replica: replica, index: 0))
        self.visionBatch = max(1, visionBatch)
        TestHooks.pause(TestHooks.slowLoad)
    }

    /// Serves jobs until the coordinator says stop.
    func run() throws {
        while true {
            let received = try context.receive(timeout: queue.isEmpty ? context.heartbeatInterval / 2 : 0)
            if let (source, message) = received {
                switch message.kind {
                case .job: queue.append(try JobMessage(message))
                case .heartbeat: break
                case .shutdown:
                    try context.sendFinalStats(["images": Double(images), "image_errors": Double(errors)])
                    return
                default: throw unexpected(message, from: source, at: context)
                }
                continue   // drain everything already there before computing
            }
            if !queue.isEmpty {
                let batch = Array(queue.prefix(visionBatch))
                queue.removeFirst(batch.count)
                try context.busy(.visionBatch, a: batch.count, b: batch.reduce(0) { $0 + $1.prompts.count }) { try encode(batch) }
            }
        }
    }

    private func encode(_ jobs: [JobMessage]) throws {
        let start = MonotonicClock.now()
        TestHooks.pause(TestHooks.slowVision)
        var ready: [(job: JobMessage, pixels: [Float], width: Int, height: Int)] = []
        for job in jobs {
            do {
                let image = try job.imageData.map { try decoder.decode(data: [UInt8]($0), name: job.imagePath) }
                    ?? decoder.decode(contentsOf: URL(fileURLWithPath: job.imagePath))
                ready.append((job, preprocessor.pixelValues(image), image.width, image.height))
            } catch {
                errors += 1
                let failure = Self.failure(for: error, path: job.imagePath, fromFile: job.imageData == nil)
                for prompt in job.prompts {
                    try context.transport.send(ResultMessage(jobID: prompt.jobID, failure: .init(failure)), to: 0)
                }
            }
        }
        guard !ready.isEmpty else { return }
        let one = 3 * imageSize * imageSize
        let pixels = Tensor(zeros: [ready.count, 3, imageSize, imageSize])
        for (i, item) in ready.enumerated() {
            precondition(item.pixels.count == one, "preprocessed image has \(item.pixels.count) values, expected \(one)")
            item.pixels.withUnsafeBufferPointer { (pixels.data + i * one).update(from: $0.baseAddress!, count: one) }
        }
        let features = projector(tower(pixels))   // [B, N, D]
        let tokens = features.count / (ready.count * textWidth)
        let seconds = (MonotonicClock.now() - start) / Double(ready.count)
        for (i, item) in ready.enumerated() {
            let measurements = JobMeasurements(imageWidth: item.width, imageHeight: item.height, visionSeconds: seconds)
            let rows = Array(UnsafeBufferPointer(start: features.data + i * tokens * textWidth, count: tokens * textWidth))
            for prompt in item.job.prompts {
                try context.send(EmbeddingsMessage(jobID: prompt.jobID, tokens: tokens, width: textWidth,
                                                             embeddings: rows, promptIDs: prompt.promptIDs,
                                                             parameters: prompt.parameters, measurements: measurements),
                                           to: stage0)
            }
            images += 1
        }
    }

    /// The record error for an image that could not be turned into pixels.
    static func failure(for error: Error, path: String, fromFile: Bool = true) -> RecordError {
        guard let error = error as? ImageError else {
            return RecordError(kind: RecordErrorKind.unreadableImage, message: "\(path): \(error)")
        }
        switch error {
        case .tooLarge: return RecordError(kind: RecordErrorKind.imageTooLarge, message: error.description)
        case .unreadable where fromFile && isMissing(path):
            return RecordError(kind: RecordErrorKind.missingImage, message: "\(path): no such file; check the manifest's image path")
        default: return RecordError(kind: RecordErrorKind.unreadableImage, message: error.description)
        }
    }

    /// Whether nothing is at `path` (ENOENT, a dangling symlink included). A path that exists but cannot be
    /// opened (a symlink loop, permissions, a directory) is not missing: its error says what it is.
    static func isMissing(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) != 0 && (errno == ENOENT || errno == ENOTDIR)
    }
}

/// The processor settings of a model directory (the SigLIP defaults at the model's size when the
/// directory has no processor file), checked against the model's image size.
func processorConfiguration(_ bundle: ModelBundle) throws -> ImageProcessorConfiguration {
    let size = bundle.hyper.vision.imageSize
    let dir = bundle.directory
    let fm = FileManager.default
    let hasFile = fm.fileExists(atPath: dir.appendingPathComponent("processor_config.json").path)
        || fm.fileExists(atPath: dir.appendingPathComponent("preprocessor_config.json").path)
    let config = hasFile ? try ImageProcessorConfiguration.load(modelDirectory: dir) : .siglip(size: size)
    guard config.size.height == size, config.size.width == size else {
        throw RunError.setup("the processor config in \(dir.path) resizes to \(config.size.height)×\(config.size.width) "
                             + "but the model's image size is \(size): fix processor_config.json")
    }
    return config
}
