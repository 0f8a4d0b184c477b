/// A row-major f32 matrix view [rows, cols] with row stride `ld`, kept alive by `owner`
/// (a `FloatBuffer` for converted weights or a `MappedFile` for f32 checkpoints used in place).
public struct Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let ld: Int
    public let base: UnsafePointer<Float>
    public let owner: AnyObject

    public init(rows: Int, cols: Int, ld: Int? = nil, base: UnsafePointer<Float>, owner: AnyObject) {
        self.rows = rows
        self.cols = cols
        self.ld = ld ?? cols
        self.base = base
        self.owner = owner
    }

    public init(_ buffer: FloatBuffer, rows: Int, cols: Int) {
        precondition(buffer.count >= rows * cols)
        self.init(rows: rows, cols: cols, base: UnsafePointer(buffer.pointer), owner: buffer)
    }

    /// Rows [start, start + count) as a matrix sharing storage.
    public func rowSlice(_ start: Int, _ count: Int) -> Matrix {
        Matrix(rows: count, cols: cols, ld: ld, base: base + start * ld, owner: owner)
    }

    public func row(_ r: Int) -> UnsafePointer<Float> { base + r * ld }

    /// Bytes a pass over the whole matrix reads.
    public var byteCount: Int { rows * cols * MemoryLayout<Float>.stride }
}
