// Tensor: a shape and a block of Float32, row-major (last dimension contiguous).
//
// Storage has reference semantics, like a C buffer: two Tensors made from the same storage see each
// other's writes. Weights are read-only views into a memory-mapped file (the storage's `owner` keeps
// the mapping alive); activations own their memory. Use `copy()` for an independent tensor.

#if canImport(Glibc)
import Glibc
#endif

/// A block of Float32 memory, owned here or borrowed from an owner (e.g. a memory-mapped file).
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// Whatever keeps borrowed memory alive; nil when this storage allocated the memory itself.
    private let owner: AnyObject?
    /// What keeps borrowed memory alive (nil when this storage owns its memory).
    public var borrowedFrom: AnyObject? { owner }

    /// Allocates `count` floats, zeroed: 64-byte aligned (cache lines, AVX loads); blocks of 4 MiB or
    /// more are 2 MiB aligned and marked for transparent huge pages (fewer TLB misses while OpenBLAS
    /// packs weight panels; without it GEMM speed varied by ~10% between processes here).
    public init(count: Int) {
        precondition(count >= 0)
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let huge = bytes >= 4 << 20
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: huge ? 2 << 20 : 64)
        #if os(Linux)
        if huge { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        #endif
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
        self.count = count
        owner = nil
    }

    /// Borrows memory that `owner` keeps alive. The pointer must be 4-byte aligned.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        precondition(Int(bitPattern: pointer) % MemoryLayout<Float>.alignment == 0, "misaligned Float storage")
        self.pointer = pointer
        self.count = count
        self.owner = owner
    }

    deinit {
        if owner == nil { pointer.deallocate() }
    }
}

public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: TensorStorage

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    /// Raw element pointer (row-major).
    public var data: UnsafeMutablePointer<Float> { storage.pointer }

    public init(shape: [Int], storage: TensorStorage) {
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not match \(storage.count) elements")
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    /// A tensor holding a copy of `values`.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not match \(values.count) values")
        let s = TensorStorage(count: values.count)
        values.withUnsafeBufferPointer { s.pointer.update(from: $0.baseAddress!, count: values.count) }
        self.init(shape: shape, storage: s)
    }

    /// The elements as an array (a copy).
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// An independent copy.
    public func copy() -> Tensor { Tensor(shape: shape, values: scalars) }

    /// The rows of `parts` one after the other: [N₁, K] + [N₂, K] + … → [ΣN, K] (1-D parts: [ΣN]).
    public static func concatenatingRows(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.shape.dropFirst() == parts[0].shape.dropFirst() },
                     "concatenatingRows: shapes \(parts.map(\.shape)) differ beyond the first axis")
        var shape = parts[0].shape
        shape[0] = parts.reduce(0) { $0 + $1.shape[0] }
        let out = Tensor(zeros: shape)
        var offset = 0
        for p in parts {
            (out.data + offset).update(from: p.data, count: p.count)
            offset += p.count
        }
        return out
    }

    /// Same storage, new shape of the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, storage: storage) }

    public subscript(flat i: Int) -> Float {
        get { data[i] }
        nonmutating set { data[i] = newValue }
    }

    /// Number of rows when viewed as a matrix [rows, last dimension].
    public var rows: Int { shape.count <= 1 ? 1 : count / shape[shape.count - 1] }
    /// The last dimension.
    public var columns: Int { shape.last ?? 1 }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = UnsafeBufferPointer(start: data, count: Swift.min(count, 6)).map { "\($0)" }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 6 ? ", …" : "")]"
    }
}
