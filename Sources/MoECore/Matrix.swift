import CKernels

/// How a weight matrix is stored in memory.
public enum WeightFormat: String, Sendable, CaseIterable {
    case f32
    /// int8, groups of 32 values along a row with one f32 scale each.
    case int8
    /// int4 (two per byte), groups of 32 with one f32 scale each.
    case int4

    /// Bytes of one row of `cols` values, scales included.
    public func rowBytes(_ cols: Int) -> Int {
        switch self {
        case .f32: return cols * 4
        case .int8: return cols + cols / 32 * 4
        case .int4: return cols / 2 + cols / 32 * 4
        }
    }
}

/// A row-major weight matrix [rows, cols], kept alive by `owner` (a `FloatBuffer` or `QuantBuffer` for converted
/// weights, or a `MappedFile` for f32 checkpoints used in place). f32 rows have stride `ld`; quantised ones are
/// contiguous with per-group scales beside them.
public struct Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let ld: Int
    public let format: WeightFormat
    public let raw: UnsafeRawPointer
    public let scales: UnsafePointer<Float>?
    public let owner: AnyObject

    public init(rows: Int, cols: Int, ld: Int? = nil, base: UnsafePointer<Float>, owner: AnyObject) {
        self.rows = rows
        self.cols = cols
        self.ld = ld ?? cols
        format = .f32
        raw = UnsafeRawPointer(base)
        scales = nil
        self.owner = owner
    }

    public init(_ buffer: FloatBuffer, rows: Int, cols: Int) {
        precondition(buffer.count >= rows * cols)
        self.init(rows: rows, cols: cols, base: UnsafePointer(buffer.pointer), owner: buffer)
    }

    /// The f32 values (f32 matrices only: norms, biases, embeddings stay f32).
    public var base: UnsafePointer<Float> {
        precondition(format == .f32, "f32 access to a \(format) matrix")
        return raw.assumingMemoryBound(to: Float.self)
    }

    /// Rows [start, start + count) as a matrix sharing storage (f32 only).
    public func rowSlice(_ start: Int, _ count: Int) -> Matrix {
        Matrix(rows: count, cols: cols, ld: ld, base: base + start * ld, owner: owner)
    }

    public func row(_ r: Int) -> UnsafePointer<Float> { base + r * ld }

    /// Bytes a pass over the whole matrix reads.
    public var byteCount: Int { rows * format.rowBytes(cols) }

    /// This matrix converted to `format` (a copy; f32 → f32 returns self). Quantising needs cols divisible by 32.
    public func converted(to f: WeightFormat) -> Matrix? {
        if f == format { return self }
        guard format == .f32, cols % 32 == 0 else { return nil }
        let q = QuantBuffer(format: f, rows: rows, cols: cols)
        for r in 0..<rows {
            let dst = q.data + r * q.rowDataBytes, sc = q.scales + r * (cols / 32)
            if f == .int8 { kern_quantize_q8(row(r), cols, dst.assumingMemoryBound(to: Int8.self), sc) }
            else { kern_quantize_q4(row(r), cols, dst.assumingMemoryBound(to: UInt8.self), sc) }
        }
        return Matrix(rows: rows, cols: cols, ld: cols, format: f, raw: UnsafeRawPointer(q.data), scales: UnsafePointer(q.scales), owner: q)
    }

    private init(rows: Int, cols: Int, ld: Int, format: WeightFormat, raw: UnsafeRawPointer, scales: UnsafePointer<Float>?, owner: AnyObject) {
        self.rows = rows
        self.cols = cols
        self.ld = ld
        self.format = format
        self.raw = raw
        self.scales = scales
        self.owner = owner
    }
}

/// Owned storage of a quantised matrix: packed values, then one f32 scale per group of 32.
public final class QuantBuffer: @unchecked Sendable {
    public let data: UnsafeMutableRawPointer
    public let scales: UnsafeMutablePointer<Float>
    public let rowDataBytes: Int

    init(format: WeightFormat, rows: Int, cols: Int) {
        rowDataBytes = format == .int8 ? cols : cols / 2
        data = UnsafeMutableRawPointer.allocate(byteCount: max(rows * rowDataBytes, 1), alignment: 64)
        scales = .allocate(capacity: max(rows * cols / 32, 1))
    }

    deinit {
        data.deallocate()
        scales.deallocate()
    }
}
