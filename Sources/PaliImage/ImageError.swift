// The one error type of PaliImage: every case names the file and what failed, and its
// description says what to do about it.

public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read at all (missing, permissions, a directory).
    case unreadable(path: String, reason: String)
    /// The bytes are neither JPEG nor PNG.
    case unsupportedFormat(path: String, signature: String)
    /// The header declares more pixels than the decoder's budget; nothing was decoded.
    case tooLarge(path: String, width: Int, height: Int, maxPixels: Int)
    /// The data ends before the image does.
    case truncated(path: String, reason: String)
    /// The codec library rejected the data.
    case corrupt(path: String, reason: String)
    /// A valid file in a layout this decoder does not handle (12-bit JPEG, 2-component JPEG).
    case unsupportedContent(path: String, reason: String)
    /// A processor configuration file is missing, unreadable or asks for something unsupported.
    case invalidConfiguration(path: String, reason: String)

    /// The file the error is about.
    public var path: String {
        switch self {
        case .unreadable(let path, _), .unsupportedFormat(let path, _), .tooLarge(let path, _, _, _),
             .truncated(let path, _), .corrupt(let path, _), .unsupportedContent(let path, _),
             .invalidConfiguration(let path, _):
            return path
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): cannot read the image file (\(reason)); check the path and its permissions."
        case .unsupportedFormat(let path, let signature):
            return "\(path): not a JPEG or PNG file (first bytes \(signature)); convert it to PNG or JPEG first."
        case .tooLarge(let path, let width, let height, let maxPixels):
            return "\(path): image is \(width)x\(height) = \(width * height) pixels, over the budget of "
                + "\(maxPixels); downscale it first or raise the limit (--max-pixels / ImageDecoder.maxPixels)."
        case .truncated(let path, let reason):
            return "\(path): the file is truncated (\(reason)); re-download or re-export it."
        case .corrupt(let path, let reason):
            return "\(path): the image data is corrupt (\(reason)); re-export it or drop it from the input."
        case .unsupportedContent(let path, let reason):
            return "\(path): unsupported image layout (\(reason)); convert it to 8-bit RGB PNG or JPEG."
        case .invalidConfiguration(let path, let reason):
            return "\(path): invalid image processor configuration (\(reason)); fix or replace "
                + "the file."
        }
    }
}
