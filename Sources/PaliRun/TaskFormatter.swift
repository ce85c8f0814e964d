// Task fields of a record: `objects` (boxes in pixels of the original image, masks as COCO RLE) when
// the answer holds <loc>/<seg> tokens, and `problems` when part of it is malformed (docs/tasks.md).
import Foundation
import PaliJSON
import PaliBatch
import PaliGeneration
import PaliModels

struct TaskFormatter {
    let maskDecoder: MaskDecoder?

    init(bundle: ModelBundle, maskDecoder url: URL?) throws {
        if let url {
            do {
                maskDecoder = try MaskDecoder(contentsOf: url)
            } catch {
                throw RunError.setup("cannot load the mask decoder \(url.path): \(error)")
            }
        } else {
            maskDecoder = nil
        }
    }

    func fields(text: String, imageWidth: Int?, imageHeight: Int?) -> [(String, JSONValue)] {
        guard let width = imageWidth, let height = imageHeight else { return [] }
        let parse = TaskOutput.parse(text: text, imageWidth: width, imageHeight: height, maskDecoder: maskDecoder)
        return parse.jsonFields ?? []
    }
}
