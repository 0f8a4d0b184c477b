import CKernels

/// How a weight matrix is stored in memory.
public enum WeightFormat: String, Sendable, CaseIterable {
    case f32
    /// IEEE half precision.
    case f16
    /// bfloat16 (the top half of an f32).
    case bf16
    /// int8, groups of 32 values along a row with one f16 scale each (llama.cpp's q8_0: 34 bytes per 32 values).
    case int8
    /// int4 (two per byte), groups of 32 with one f16 scale each (q4_0: 18 bytes per 32 values).
    case int4
    /// MXFP4's e2m1 values (two per byte), groups of 32 with a power of two each (18 bytes per 32 values, as int4):
    /// gpt-oss's experts exactly as released (see KERN_MX4).
    case mxfp4
    /// int4 with a zero point per group: (code − z) × scale, code and z in 0…15 (19 bytes per 32 values, a row's zero
    /// points padded to 32 bytes): holds an asymmetric 4-bit checkpoint's (AWQ, GPTQ with zero points) groups
    /// exactly (see KERN_Q4Z).
    case int4z

    /// The C kernels' code for this format.
    public var kernelCode: Int32 {
        switch self {
        case .f32: return Int32(KERN_F32)
        case .f16: return Int32(KERN_F16)
        case .bf16: return Int32(KERN_BF16)
        case .int8: return Int32(KERN_Q8)
        case .int4: return Int32(KERN_Q4)
        case .mxfp4: return Int32(KERN_MX4)
        case .int4z: return Int32(KERN_Q4Z)
        }
    }

    /// Group-quantised (widths must be multiples of 32).
    public var isGrouped: Bool { self == .int8 || self == .int4 || self == .mxfp4 || self == .int4z }

    /// Bytes of one row of `cols` values, scales included.
    public func rowBytes(_ cols: Int) -> Int { kern_format_row_bytes(kernelCode, cols) }

    /// Bytes of one row's values alone (int8/int4 keep their scales in a separate array).
    public func valueBytes(_ cols: Int) -> Int { isGrouped ? rowBytes(cols) - cols / 32 * 2 : rowBytes(cols) }

    /// The largest weight magnitude a group can hold: int8/int4 scales (amax/127, amax/7) are f16, at most 65504;
    /// mxfp4 stores 2^(e−1), at most 2^15.
    public var maxMagnitude: Float {
        switch self {
        case .int8: return 127 * KERN_Q_MAX_SCALE
        case .int4, .int4z: return 7 * KERN_Q_MAX_SCALE
        case .mxfp4: return 6 * 0x1p16                      // e2m1's 6 times the largest scale, 2^16
        default: return .greatestFiniteMagnitude
        }
    }

    /// Why the f32 matrix `m` cannot be held in this format, or nil when it can: int8/int4 need rows of a multiple
    /// of 32 values and finite values within `maxMagnitude`.
    public func reasonCannotHold(_ m: Matrix) -> String? {
        guard isGrouped else { return nil }
        if m.cols % 32 != 0 { return "its rows have \(m.cols) values, not a multiple of the group size 32" }
        for r in 0..<m.rows {
            let row = m.row(r)
            for c in 0..<m.cols where !(abs(row[c]) <= maxMagnitude) {
                return "row \(r) holds \(row[c]) at column \(c), beyond the ±\(maxMagnitude) that \(rawValue)'s f16 group scales can hold"
            }
        }
        return nil
    }

    /// Accepted spellings in configs and flags (`q8_0`/`q4_0` as llama.cpp names them).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "fp32", "float": self = .f32
        case "f16", "float16", "fp16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "int8", "q8", "q8_0": self = .int8
        case "int4", "q4", "q4_0": self = .int4
        case "mxfp4", "mx4": self = .mxfp4
        case "int4z", "q4z": self = .int4z
        default: return nil
        }
    }

    public static let names = "f32, f16, bf16, int8, int4, int4z or mxfp4"
}

/// A weight matrix [rows, cols], kept alive by `owner` (a `FloatBuffer` or `QuantBuffer` for converted weights, or
/// a `MappedFile` for f32 checkpoints used in place). f32 rows have stride `ld`. Converted ones (f16, bf16, int8,
/// int4, with per-group scales beside them) are row-major, or in column panels (`panels`, see `kern_panels`) when a
/// product's input row and a block of weight rows would not fit in L1 together (`Matrix.panelWidth`).
public struct Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let ld: Int
    public let format: WeightFormat
    /// The allocation's start (a row view of a matrix in panels shares it and moves `panels.row0` instead).
    public let raw: UnsafeRawPointer
    /// int8/int4: one f16 scale per group of 32, row after row (in panels like the values).
    public let scales: UnsafePointer<UInt16>?
    public let owner: AnyObject
    /// Column panels: width 0 when rows are held one after another.
    public let panels: kern_panels
    /// For an f32 matrix read from a checkpoint: the format that holds its values at about the size they are stored
    /// in (bf16 for bf16, int4 for a 4-bit GPTQ layer, …; see Checkpoint.heldFormat), what `attention.dtype` and
    /// `experts.dtype` auto hold it as. nil for matrices made otherwise.
    public var stored: WeightFormat?
    /// For an f32 matrix read from a checkpoint whose groups are scattered over its columns (GPTQ's act order): the
    /// column order that puts each group's columns together, which a conversion to a grouped format holds them in
    /// (each run of 32 then lies in one group, so a 4-bit checkpoint's values stay exact in int4/int4z).
    public var groupOrder: ColumnOrder?
    /// For a grouped matrix: the order its columns are held in (position j holds column index[j]); a product gathers
    /// its inputs into that order first. nil: as they come.
    public var heldOrder: ColumnOrder?

    /// The widest panel, in values: its input columns (4 KB of f32) stay in L1 while the weights stream.
    public static let panelLimit = 1024

    /// Bytes of L1 that a product's input row and a block of four weight rows may take before the rows go in
    /// panels: beyond it the weight rows evict the input at every block. f16 rows of 3584, 4096 and 14336 values
    /// (the bench's and Mixtral-8x7B's experts: 42 KB and more) streamed 1.07×, 1.23× and 1.16× as fast in panels
    /// in minutes at 60+ GB/s, level below 40; int8 rows of 3584 (25 KB) 1.03×; int4 rows of 3584 (15 KB) lost
    /// 4–7% in panels (a panel's fixed work per block weighs most on int4's short rows), so they stay whole.
    public static let panelL1Bytes = 24 * 1024

    /// The panel width for rows of `cols` values in `format`: 0 (rows whole) while the input row (f32 for f32, f16
    /// and bf16 products; int8 products' two bytes and int4's one per value, and their lane sums, a byte per value)
    /// and four weight rows fit in `panelL1Bytes`; else the widest even split into panels of at most `panelLimit`
    /// values that is a multiple of 128 (512 for int8/int4, whose groups are taken in spans of 16 where they can
    /// be), or `panelLimit` with a narrower last panel.
    public static func panelWidth(cols: Int, format: WeightFormat) -> Int {
        let input = !format.isGrouped ? 4 : format == .int8 ? 3 : 2
        guard cols > panelLimit, cols * input + 4 * format.rowBytes(cols) > panelL1Bytes else { return 0 }
        let n = (cols + panelLimit - 1) / panelLimit, multiple = format.isGrouped ? 512 : 128
        return cols % n == 0 && (cols / n) % multiple == 0 ? cols / n : panelLimit
    }

    /// Panel k's first column and width.
    func panel(_ k: Int) -> (start: Int, width: Int) {
        if panels.width == 0 { return (0, cols) }
        let start = k * panels.width
        return (start, min(panels.width, cols - start))
    }

    var panelCount: Int { panels.width == 0 ? 1 : (cols + panels.width - 1) / panels.width }

    public init(rows: Int, cols: Int, ld: Int? = nil, base: UnsafePointer<Float>, owner: AnyObject) {
        self.rows = rows
        self.cols = cols
        self.ld = ld ?? cols
        format = .f32
        raw = UnsafeRawPointer(base)
        scales = nil
        self.owner = owner
        panels = kern_panels(width: 0, rows: rows, row0: 0)
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

    public func row(_ r: Int) -> UnsafePointer<Float> { base + r * ld }

    /// Bytes a pass over the whole matrix reads.
    public var byteCount: Int { rows * format.rowBytes(cols) }

    /// This matrix converted to `format` (a copy; same format returns self). Only f32 matrices convert; int8/int4
    /// need cols divisible by 32 and finite values within `maxMagnitude` (nil otherwise: `reasonCannotHold` says why).
    public func converted(to f: WeightFormat) -> Matrix? {
        if f == format { return self }
        return Matrix.stacking([self], as: f)
    }

    /// f32 matrices of one width converted to `f` (not f32) into one allocation, their rows one after another: one
    /// product over the stack computes them all with one pass over the activations and one parallel region.
    /// A grouped format holds each part's columns in its `groupOrder`, which the parts must then share (nil otherwise).
    public static func stacking(_ parts: [Matrix], as f: WeightFormat) -> Matrix? {
        guard let cols = parts.first?.cols, f != .f32,
              parts.allSatisfy({ $0.format == .f32 && $0.cols == cols }), !f.isGrouped || cols % 32 == 0 else { return nil }
        let order = f.isGrouped ? parts[0].groupOrder : nil
        guard parts.allSatisfy({ ($0.groupOrder?.index ?? []) == (order?.index ?? []) }) || !f.isGrouped else { return nil }
        let rows = parts.reduce(0) { $0 + $1.rows }
        let q = QuantBuffer(format: f, rows: rows, cols: cols)
        var stack = Matrix(rows: rows, cols: cols, ld: cols, format: f, raw: UnsafeRawPointer(q.data),
                           scales: f.isGrouped ? UnsafePointer(q.scales) : nil, owner: q,
                           panels: kern_panels(width: Matrix.panelWidth(cols: cols, format: f), rows: rows, row0: 0))
        stack.heldOrder = order
        let gathered = order.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: cols) }
        defer { gathered?.deallocate() }
        var r = 0
        for m in parts {
            for i in 0..<m.rows {
                var row = m.row(i)
                if let order, let g = gathered {
                    for (j, c) in order.index.enumerated() { g[j] = row[Int(c)] }
                    row = UnsafePointer(g)
                }
                for k in 0..<stack.panelCount {
                    let (start, width) = stack.panel(k), (dst, sc) = stack.location(row: r, panel: k)
                    let src = row + start
                    switch f {
                    case .int8, .int4, .mxfp4, .int4z:
                        guard kern_quantize_weights(f.kernelCode, src, width, UnsafeMutableRawPointer(mutating: dst),
                                                    UnsafeMutablePointer(mutating: sc)) == 0 else { return nil }
                    case .f16: kern_f32_to_f16(src, UnsafeMutableRawPointer(mutating: dst).assumingMemoryBound(to: UInt16.self), width)
                    case .bf16: kern_f32_to_bf16(src, UnsafeMutableRawPointer(mutating: dst).assumingMemoryBound(to: UInt16.self), width)
                    case .f32: break
                    }
                }
                r += 1
            }
            // An f32 part read in place from a checkpoint's mapping is now held converted: its pages may go.
            if let file = m.owner as? MappedFile { file.release(from: UnsafeRawPointer(m.row(0)), count: ((m.rows - 1) * m.ld + m.cols) * 4) }
        }
        return stack
    }

    /// Where row r's values (and scales, for int8/int4) of panel k are (k = 0 for a matrix without panels).
    func location(row r: Int, panel k: Int) -> (values: UnsafeRawPointer, scales: UnsafePointer<UInt16>?) {
        if panels.width == 0 {
            return (raw + r * format.valueBytes(cols), scales.map { $0 + r * (cols / 32) })
        }
        let w = panels.width, all = panels.rows, width = panel(k).width, row = panels.row0 + r
        let values = raw + k * all * format.valueBytes(w) + row * format.valueBytes(width)
        return (values, scales.map { $0 + k * all * (w / 32) + row * (width / 32) })
    }

    /// Rows [range) of this matrix, sharing its storage.
    public func rows(_ range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) of a \(rows)-row matrix")
        var view: Matrix
        if panels.width != 0 {
            view = Matrix(rows: range.count, cols: cols, ld: ld, format: format, raw: raw, scales: scales, owner: owner,
                          panels: kern_panels(width: panels.width, rows: panels.rows, row0: panels.row0 + range.lowerBound))
        } else {
            let offset = format == .f32 ? range.lowerBound * ld * 4 : range.lowerBound * format.valueBytes(cols)
            view = Matrix(rows: range.count, cols: cols, ld: ld, format: format, raw: raw + offset,
                          scales: scales.map { $0 + range.lowerBound * (cols / 32) }, owner: owner, panels: panels)
        }
        view.stored = stored
        view.groupOrder = groupOrder
        view.heldOrder = heldOrder
        return view
    }

    /// Row `r` as f32 values, whatever the format (what the products multiply by; tests compare against it).
    public func dequantizedRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        if format == .f32 { out.update(from: row(r), count: cols); return }
        let held = heldOrder == nil ? out : UnsafeMutablePointer<Float>.allocate(capacity: cols)
        for k in 0..<panelCount {
            let (start, width) = panel(k), (values, sc) = location(row: r, panel: k)
            kern_dequantize(format.kernelCode, values, sc, width, held + start)
        }
        if let order = heldOrder {
            for (j, c) in order.index.enumerated() { out[Int(c)] = held[j] }
            held.deallocate()
        }
    }

    private init(rows: Int, cols: Int, ld: Int, format: WeightFormat, raw: UnsafeRawPointer, scales: UnsafePointer<UInt16>?,
                 owner: AnyObject, panels: kern_panels) {
        self.rows = rows
        self.cols = cols
        self.ld = ld
        self.format = format
        self.raw = raw
        self.scales = scales
        self.owner = owner
        self.panels = panels
    }
}

/// A permutation of a matrix's columns: position j holds column index[j].
public final class ColumnOrder: @unchecked Sendable {
    public let index: [Int32]
    public init(_ index: [Int32]) { self.index = index }

    /// The columns sorted by their group (GPTQ's g_idx: input i's group), in their order within a group; nil when
    /// each group's columns already come together in order.
    public static func grouping(_ group: [Int32]) -> ColumnOrder? {
        if zip(group, group.dropFirst()).allSatisfy({ $0 <= $1 }) { return nil }
        return ColumnOrder(group.indices.sorted { (group[$0], $0) < (group[$1], $1) }.map(Int32.init))
    }

    /// Whether this is `grouping(group)`: a permutation of group's indices that leaves their groups, then the
    /// indices within a group, in increasing order (that order is unique).
    public func sorts(_ group: [Int32]) -> Bool {
        guard index.count == group.count else { return false }
        var seen = [Bool](repeating: false, count: group.count)
        for (j, c) in index.enumerated() {
            guard c >= 0, Int(c) < group.count, !seen[Int(c)] else { return false }
            seen[Int(c)] = true
            if j > 0, (group[Int(index[j - 1])], index[j - 1]) >= (group[Int(c)], c) { return false }
        }
        return true
    }

    /// x's T rows (stride ldx) with their values in this order, packed: [T, index.count]. The caller deallocates.
    public func gather(_ x: UnsafePointer<Float>, rows T: Int, ldx: Int) -> UnsafeMutablePointer<Float> {
        let n = index.count, out = UnsafeMutablePointer<Float>.allocate(capacity: max(T * n, 1))
        index.withUnsafeBufferPointer { idx in
            for t in 0..<T {
                let src = x + t * ldx, dst = out + t * n
                for j in 0..<n { dst[j] = src[Int(idx[j])] }
            }
        }
        return out
    }
}

/// Owned storage of a converted matrix: packed values, then (int8/int4) one f16 scale per group of 32.
public final class QuantBuffer: @unchecked Sendable {
    public let data: UnsafeMutableRawPointer
    public let scales: UnsafeMutablePointer<UInt16>
    public let rowDataBytes: Int

    init(format: WeightFormat, rows: Int, cols: Int) {
        rowDataBytes = format.valueBytes(cols)
        data = UnsafeMutableRawPointer.allocate(byteCount: max(rows * rowDataBytes, 1), alignment: 64)
        scales = .allocate(capacity: format.isGrouped ? max(rows * cols / 32, 1) : 1)
    }

    deinit {
        data.deallocate()
        scales.deallocate()
    }
}
