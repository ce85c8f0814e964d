// Manifest image paths made absolute and resolved ("..", symlinks) the way the system will open them,
// and checked against `--image-root`: a path that escapes it is a per-entry error, not a run error.
import Foundation

/// Turns manifest image paths into absolute, resolved paths and checks them against the image root.
struct PathResolver {
    /// The folder relative paths start from (resolved).
    let base: String
    /// The resolved image root, and the root as given (for messages).
    let root: String?
    let rootAsGiven: String?

    init(base: URL, root: URL?) {
        self.base = PathResolver.canonical(base.path)
        self.root = root.map { PathResolver.canonical($0.path) }
        self.rootAsGiven = root?.path
    }

    func resolve(_ image: String) -> (path: String?, error: String?) {
        let joined = image.hasPrefix("/") ? image : (base == "/" ? "/" : base + "/") + image
        let resolved = PathResolver.canonical(joined)
        if let root, !PathResolver.isInside(resolved, root) {
            let shown = resolved == image ? "" : " (resolves to \(resolved))"
            return (nil, "image path \(image)\(shown) escapes --image-root \(rootAsGiven ?? root)")
        }
        return (resolved, nil)
    }

    static func isInside(_ path: String, _ root: String) -> Bool {
        root == "/" || path == root || path.hasPrefix(root + "/")
    }

    /// The absolute path with symlinks resolved as the system would resolve them (realpath of the
    /// longest existing prefix), then "." and ".." of the missing rest removed.
    static func canonical(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        if let real = realPath(absolute) { return real }
        let parts = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var k = parts.count - 1
        while k >= 0 {
            let prefix = "/" + parts[..<k].joined(separator: "/")
            if let real = realPath(prefix) {
                return normalize(real + "/" + parts[k...].joined(separator: "/"))
            }
            k -= 1
        }
        return normalize(absolute)
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Removes ".", ".." and repeated slashes without touching the file system.
    static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = out.popLast(); continue }
            out.append(part)
        }
        return "/" + out.joined(separator: "/")
    }
}
