// Task fields of a record: `objects` (boxes, masks) when the answer holds <loc> tokens.
import Foundation
import PaliBatch
import PaliGeneration

struct TaskFormatter {
    init(bundle: ModelBundle, maskDecoder: URL?) throws {}

    func fields(text: String, imageWidth: Int?, imageHeight: Int?) -> [(String, JSONValue)] { [] }
}
