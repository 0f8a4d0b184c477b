import Foundation
import MoECore

/// A Hugging Face checkpoint directory: `config.json` plus one `model.safetensors` or shards listed by
/// `model.safetensors.index.json`. Tensors are found by name across shards and read from the memory maps.
public final class Checkpoint: @unchecked Sendable {
    public let directory: URL
    public let configData: Data
    public let files: [SafetensorsFile]
    private let index: [String: (file: Int, entry: TensorEntry)]
    /// config.json's quantization_config (FP8, compressed-tensors, MXFP4 checkpoints), nil for unquantised ones.
    public let quantization: QuantizationConfig?

    /// Bytes of weights this process converted or mapped through `matrix`/`vector` (what it holds).
    public private(set) var bytesHeld = 0
    private let lock = NSLock()
    private var orders: [Int: ColumnOrder] = [:]

    /// `configOverrides` (vLLM's --hf-overrides, a JSON object) replaces config.json's top-level keys.
    public init(directory: URL, configOverrides: Data? = nil) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError.missingFile("\(directory.path) (expected a checkpoint directory)")
        }
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw ModelError.missingFile(configURL.path)
        }
        configData = try configOverrides.map { try ConfigOverrides.apply($0, to: data) } ?? data
        quantization = try QuantizationConfig(configJSON: configData)
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        var shardNames: [String]
        if FileManager.default.fileExists(atPath: indexURL.path) {
            guard let d = FileManager.default.contents(atPath: indexURL.path),
                  let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw ModelError.badConfig(file: "model.safetensors.index.json", reason: "no weight_map object")
            }
            shardNames = Array(Set(map.values)).sorted()
        } else {
            let single = directory.appendingPathComponent("model.safetensors")
            if FileManager.default.fileExists(atPath: single.path) {
                shardNames = ["model.safetensors"]
            } else {
                let all = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
                shardNames = all.filter { $0.hasSuffix(".safetensors") }.sorted()
                if shardNames.isEmpty { throw ModelError.missingFile(single.path) }
            }
        }
        files = try shardNames.map { try SafetensorsFile(url: directory.appendingPathComponent($0)) }
        var idx: [String: (Int, TensorEntry)] = [:]
        for (i, f) in files.enumerated() {
            for (name, e) in f.entries { idx[name] = (i, e) }
        }
        index = idx
    }

    public var tensorNames: [String] { index.keys.sorted() }
    /// Whether the checkpoint holds the tensor (a compressed-tensors pack-quantized weight as `NAME_packed`, an MXFP4
    /// one as `NAME_blocks`).
    public func has(_ name: String) -> Bool {
        index[name] != nil || index[name + "_packed"] != nil || index[name + "_blocks"] != nil || groupedIntBase(name) != nil
    }

    /// `NAME` of a GPTQ / AWQ layer whose weight `NAME.weight` is stored as `NAME.qweight` (see GroupedIntLayout).
    private func groupedIntBase(_ name: String) -> String? {
        guard index[name] == nil, name.hasSuffix(".weight") else { return nil }
        let base = String(name.dropLast(".weight".count))
        return index[base + ".qweight"] != nil ? base : nil
    }
    public func entry(_ name: String) -> TensorEntry? { index[name]?.entry }

    /// A stable fingerprint of config.json, the tensor index (names, dtypes, shapes) and a sample of each file's
    /// tensor bytes (its first and last 4 KiB), to check that several processes (hosts) see the same model without
    /// reading it all.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        func mix(_ bytes: some Sequence<UInt8>) { for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 } }
        mix(configData)
        for name in tensorNames {
            let e = index[name]!.entry
            mix(Array("\(name)|\(e.dtypeName)|\(e.shape)".utf8))
        }
        for f in files {
            let n = f.mapping.size, k = min(4096, n)
            mix(UnsafeRawBufferPointer(start: f.mapping.base, count: k))
            mix(UnsafeRawBufferPointer(start: f.mapping.base + (n - k), count: k))
        }
        return h
    }

    private func locate(_ name: String) throws -> (SafetensorsFile, TensorEntry) {
        guard let (fi, e) = index[name] else {
            throw ModelError.missingTensor(name, where: directory.path)
        }
        return (files[fi], e)
    }

    /// The tensor `name` as an f32 matrix [rows, cols] (a 1-D tensor is one row). f32 data stays in the mapping;
    /// f16/bf16 are converted once into owned storage. `expected` is the shape the model needs.
    public func matrix(_ name: String, shape expected: [Int]) throws -> Matrix {
        try matrixSlice(name, shape: expected, rowStart: 0, rowCount: expected.count <= 1 ? 1 : expected.dropLast().reduce(1, *))
    }

    /// Rows [start, start+count) of a tensor viewed as [rows, cols] — used for one expert of a fused expert tensor,
    /// so a process converts only the experts it holds.
    public func matrixSlice(_ name: String, shape expected: [Int], rowStart: Int, rowCount: Int) throws -> Matrix {
        var m: Matrix
        if let u = try unpacked(name, shape: expected, rowStart: rowStart, rows: rowCount) {
            m = u
        } else {
            let (file, e) = try locate(name)
            guard e.shape == expected else { throw ModelError.shapeMismatch(tensor: name, expected: expected, found: e.shape) }
            m = try load(file, e, rowStart: rowStart, rows: rowCount, cols: expected.last ?? 1)
        }
        m.stored = heldFormat(name)
        return m
    }

    /// The format that holds tensor `name` at about the size it is stored in: a quantised weight (packed or GPTQ /
    /// AWQ integers, MXFP4, float8 or int8 with scales) as quantization_config's `heldAs`, a bf16 or f16 one as
    /// itself, any other as f32.
    public func heldFormat(_ name: String) -> WeightFormat {
        guard let e = index[name]?.entry else { return has(name) ? quantization?.heldAs ?? .f32 : .f32 }
        switch e.dtypeName {
        case "BF16": return .bf16
        case "F16": return .f16
        default: return ScaledFormat(rawValue: e.dtypeName) != nil ? quantization?.heldAs ?? .f32 : .f32
        }
    }

    /// Rows of `name` where it is stored as packed integers (compressed-tensors' `NAME_packed`, GPTQ / AWQ's
    /// `….qweight`), as f32; nil where it is stored under its own name.
    private func unpacked(_ name: String, shape expected: [Int], rowStart: Int, rows: Int) throws -> Matrix? {
        if index[name] == nil, index[name + "_packed"] != nil { return try loadPacked(name, shape: expected, rowStart: rowStart, rows: rows) }
        if let base = groupedIntBase(name) { return try loadGroupedInt(base, shape: expected, rowStart: rowStart, rows: rows) }
        return nil
    }

    /// Whether `name` is stored as MXFP4 (`NAME_blocks` and `NAME_scales`).
    public func isMXFP4(_ name: String) -> Bool { index[name] == nil && index[name + "_blocks"] != nil }

    /// Rows [rowStart, rowStart + rowCount) of an MXFP4 tensor of logical shape `expected` [..., R, C] viewed as
    /// [rows, C], as f32: `NAME_blocks` [..., R, C/32, 16] and `NAME_scales` [..., R, C/32], both U8 (see MXFP4).
    public func mxfp4Slice(_ name: String, shape expected: [Int], rowStart: Int, rowCount: Int) throws -> Matrix {
        let cols = expected.last ?? 1
        guard cols % 32 == 0 else {
            throw ModelError.badTensor(tensor: name + "_blocks", reason: "MXFP4 rows of \(cols) values: a multiple of 32 is needed")
        }
        let (bf, b) = try locate(name + "_blocks"), (sf, s) = try locate(name + "_scales")
        let lead = Array(expected.dropLast())
        guard b.dtypeName == "U8", b.shape == lead + [cols / 32, 16] else {
            throw ModelError.shapeMismatch(tensor: b.name, expected: lead + [cols / 32, 16], found: b.shape)
        }
        guard s.dtypeName == "U8", s.shape == lead + [cols / 32] else {
            throw ModelError.shapeMismatch(tensor: s.name, expected: lead + [cols / 32], found: s.shape)
        }
        lock.lock(); bytesHeld += rowCount * cols * 4; lock.unlock()
        let buf = FloatBuffer(count: rowCount * cols, zeroed: false)
        let blocks = bf.pointer(b).assumingMemoryBound(to: UInt8.self) + rowStart * cols / 2
        let scales = sf.pointer(s).assumingMemoryBound(to: UInt8.self) + rowStart * cols / 32
        if let bad = MXFP4.dequantize(blocks: blocks, scales: scales, rows: rowCount, cols: cols, into: buf.pointer) {
            throw ModelError.badTensor(tensor: s.name, reason: "scale \(rowStart * cols / 32 + bad) is 255 (NaN in e8m0)")
        }
        bf.mapping.release(from: UnsafeRawPointer(blocks), count: rowCount * cols / 2)
        var m = Matrix(buf, rows: rowCount, cols: cols)
        m.stored = heldFormat(name)
        return m
    }

    public func vector(_ name: String, count: Int) throws -> Matrix {
        try matrix(name, shape: [count])
    }

    private func load(_ file: SafetensorsFile, _ e: TensorEntry, rowStart: Int = 0, rows: Int, cols: Int) throws -> Matrix {
        if let f = ScaledFormat(rawValue: e.dtypeName), f != .int8 || quantization != nil {
            return try loadScaled(file, e, format: f, rowStart: rowStart, rows: rows, cols: cols)
        }
        guard let dtype = e.dtype else { throw ModelError.unsupportedDType(tensor: e.name, dtype: e.dtypeName) }
        let n = rows * cols
        let src = file.pointer(e) + rowStart * cols * dtype.size
        lock.lock(); bytesHeld += n * 4; lock.unlock()
        switch dtype {
        case .f32:
            if Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
                return Matrix(rows: rows, cols: cols, base: src.assumingMemoryBound(to: Float.self), owner: file.mapping)
            }
            let buf = FloatBuffer(count: n, zeroed: false)
            UnsafeMutableRawPointer(buf.pointer).copyMemory(from: src, byteCount: n * 4)
            file.mapping.release(from: src, count: n * 4)
            return Matrix(buf, rows: rows, cols: cols)
        case .bf16, .f16:
            let buf = FloatBuffer(count: n, zeroed: false)
            Self.widen(src, dtype, n, into: buf.pointer)
            file.mapping.release(from: src, count: n * 2)
            return Matrix(buf, rows: rows, cols: cols)
        }
    }

    /// `n` f16/bf16 values at `src` (any alignment) as f32.
    private static func widen(_ src: UnsafeRawPointer, _ dtype: StorageDType, _ n: Int, into out: UnsafeMutablePointer<Float>) {
        let halfs: UnsafePointer<UInt16>
        var tmp: UnsafeMutablePointer<UInt16>?
        if Int(bitPattern: src) % 2 == 0 {
            halfs = src.assumingMemoryBound(to: UInt16.self)
        } else {
            tmp = .allocate(capacity: n)
            UnsafeMutableRawPointer(tmp!).copyMemory(from: src, byteCount: n * 2)
            halfs = UnsafePointer(tmp!)
        }
        if dtype == .bf16 { bf16ToF32(halfs, out, n) } else { f16ToF32(halfs, out, n) }
        tmp?.deallocate()
    }

    /// A float8 or int8 tensor times its scales, as f32: `NAME_scale_inv` (blocks of quantization_config's weight_block_size)
    /// or `NAME_scale` (one scale, one per row, or compressed-tensors' groups or blocks).
    private func loadScaled(_ file: SafetensorsFile, _ e: TensorEntry, format: ScaledFormat, rowStart: Int, rows: Int, cols: Int) throws -> Matrix {
        let scales = try scales(forWeight: e.name, shape: e.shape, dtype: e.dtypeName)
        let n = rows * cols
        let src = file.pointer(e) + rowStart * cols
        lock.lock(); bytesHeld += n * 4; lock.unlock()
        let buf = FloatBuffer(count: n, zeroed: false)
        scales.dequantize(src.assumingMemoryBound(to: UInt8.self), format: format, firstRow: rowStart, rows: rows, into: buf.pointer)
        file.mapping.release(from: src, count: n)
        return Matrix(buf, rows: rows, cols: cols)
    }

    /// A compressed-tensors pack-quantized weight (`NAME_packed`, int32 words of 4- or 8-bit values, with
    /// `NAME_scale` and `NAME_shape`) as f32: rows [rowStart, rowStart + rows) of it viewed as [rows, cols].
    private func loadPacked(_ name: String, shape expected: [Int], rowStart: Int, rows: Int) throws -> Matrix {
        guard let bits = quantization?.packedBits else {
            throw ModelError.unsupported("\(name)_packed: packed weights need quantization_config's compressed-tensors pack-quantized format")
        }
        let (file, e) = try locate(name + "_packed")
        let cols = expected.last ?? 1, words = (cols * bits + 31) / 32
        let packedShape = Array(expected.dropLast()) + [words]
        guard e.dtypeName == "I32", e.shape == packedShape else {
            throw ModelError.shapeMismatch(tensor: e.name, expected: packedShape, found: e.shape)
        }
        if let (sf, s) = try? locate(name + "_shape") {
            guard s.dtypeName == "I64", s.elementCount >= 2 else { throw ModelError.unsupportedDType(tensor: s.name, dtype: s.dtypeName) }
            let p = sf.pointer(s)
            let stored = (0..<s.elementCount).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            guard Array(stored.suffix(2)) == Array(expected.suffix(2)) else {
                throw ModelError.shapeMismatch(tensor: s.name, expected: Array(expected.suffix(2)), found: stored)
            }
        }
        let scales = try scales(forWeight: name, shape: expected, dtype: "I\(bits) packed")
        lock.lock(); bytesHeld += rows * cols * 4; lock.unlock()
        let buf = FloatBuffer(count: rows * cols, zeroed: false)
        scales.dequantizePacked(file.pointer(e), bits: bits, wordsPerRow: words, firstRow: rowStart, rows: rows, into: buf.pointer)
        file.mapping.release(from: file.pointer(e) + rowStart * words * 4, count: rows * words * 4)
        return Matrix(buf, rows: rows, cols: cols)
    }

    /// A GPTQ / AWQ layer `base` (`base.qweight`, `base.qzeros`, `base.scales`, GPTQ's `base.g_idx`) as f32: outputs
    /// [rowStart, rowStart + rows) of its [out, in] weight.
    private func loadGroupedInt(_ base: String, shape expected: [Int], rowStart: Int, rows: Int) throws -> Matrix {
        guard let layout = quantization?.groupedInt else {
            throw ModelError.unsupported("\(base).qweight: GPTQ / AWQ weights need quantization_config's quant_method gptq or awq")
        }
        guard expected.count == 2 else {
            throw ModelError.unsupported("\(base).qweight: a GPTQ / AWQ layer holds one matrix, where \(expected) is expected")
        }
        let out = expected[0], inputs = expected[1]
        if let why = layout.misfit(out: out, inputs: inputs) {
            throw ModelError.badTensor(tensor: base + ".qweight", reason: "a [\(out), \(inputs)] weight cannot be packed that way: \(why)")
        }
        let shapes = layout.shapes(out: out, inputs: inputs), groups = layout.groups(inputs: inputs)
        let (qf, q) = try locate(base + ".qweight"), (zf, z) = try locate(base + ".qzeros"), (sf, s) = try locate(base + ".scales")
        guard q.dtypeName == "I32", q.shape == shapes.qweight else { throw ModelError.shapeMismatch(tensor: q.name, expected: shapes.qweight, found: q.shape) }
        guard z.dtypeName == "I32", z.shape == shapes.qzeros else { throw ModelError.shapeMismatch(tensor: z.name, expected: shapes.qzeros, found: z.shape) }
        guard s.shape == [groups, out] else { throw ModelError.shapeMismatch(tensor: s.name, expected: [groups, out], found: s.shape) }
        let scales = try finiteScales(sf, s)
        var group: [Int32]?
        if let (gf, g) = try? locate(base + ".g_idx") {
            guard g.dtypeName == "I32", g.shape == [inputs] else { throw ModelError.shapeMismatch(tensor: g.name, expected: [inputs], found: g.shape) }
            let p = gf.pointer(g)
            let values = (0..<inputs).map { Int32(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            if let bad = values.firstIndex(where: { $0 < 0 || Int($0) >= groups }) {
                throw ModelError.badTensor(tensor: g.name, reason: "input \(bad) is in group \(values[bad]), outside the \(groups) groups of \(base).scales")
            }
            group = values
        }
        lock.lock(); bytesHeld += rows * inputs * 4; lock.unlock()
        let buf = FloatBuffer(count: rows * inputs, zeroed: false)
        layout.dequantize(qweight: qf.pointer(q), qzeros: zf.pointer(z), scales: scales, group: group, out: out, inputs: inputs,
                          r0: rowStart, rows: rows, into: buf.pointer)
        // The codes are transposed: only a whole layer's pages are done with.
        if rowStart == 0 && rows == out { qf.mapping.release(from: qf.pointer(q), count: q.elementCount * 4) }
        var m = Matrix(buf, rows: rows, cols: inputs)
        m.groupOrder = group.flatMap(groupOrder)
        return m
    }

    /// The column order that puts the groups of `group` (a g_idx) together, one instance for each distinct g_idx
    /// (layers quantised from one input, as an MLP's gate and up or attention's q, k and v, share theirs): kept by
    /// the g_idx's hash, and taken when it is that g_idx's order (ColumnOrder.sorts), so no g_idx is kept.
    private func groupOrder(_ group: [Int32]) -> ColumnOrder? {
        let key = group.hashValue
        lock.lock()
        let cached = orders[key]
        lock.unlock()
        if let cached, cached.sorts(group) { return cached }
        guard let o = ColumnOrder.grouping(group) else { return nil }
        lock.lock(); orders[key] = o; lock.unlock()
        return o
    }

    /// The scales of weight `weight` (of `stored` shape, stored as `dtype`): `NAME_scale_inv` or `NAME_scale`, laid
    /// out as quantization_config says.
    private func scales(forWeight weight: String, shape stored: [Int], dtype: String) throws -> WeightScales {
        let shape = stored.isEmpty ? [1] : stored
        let cols = shape.last!, matrixRows = shape.count >= 2 ? shape[shape.count - 2] : 1
        let (name, layout): (String, WeightScales.Layout)
        if has(weight + "_scale_inv") {
            if let quantization, quantization.blockSize == nil {
                (name, layout) = (weight + "_scale_inv", .tensor)
            } else {
                guard shape.count >= 2 else {
                    throw ModelError.unsupported("\(weight) of shape \(stored) has block scales; blocks need a matrix")
                }
                let b = quantization?.blockSize ?? (rows: 128, cols: 128)
                (name, layout) = (weight + "_scale_inv", .blocks(rows: b.rows, cols: b.cols))
            }
        } else if let count = index[weight + "_scale"]?.entry.elementCount {
            if count > 1, let b = quantization?.scaleBlock {
                (name, layout) = (weight + "_scale", .blocks(rows: b.rows, cols: b.cols))
            } else {
                (name, layout) = (weight + "_scale", count == 1 ? .tensor : .rows)
            }
        } else {
            throw ModelError.missingScales(tensor: weight, dtype: dtype)
        }
        let (file, s) = try locate(name)
        let expected = WeightScales.expectedShape(of: shape, layout: layout)
        let fits: Bool
        switch layout {
        case .tensor: fits = s.elementCount == 1
        case .rows: fits = s.shape == expected || s.shape == Array(expected.dropLast())
        case .blocks: fits = s.shape == expected
        }
        guard fits else { throw ModelError.shapeMismatch(tensor: name, expected: expected, found: s.shape) }
        let values = try finiteScales(file, s)
        let zeros = try index[weight + "_zero_point"].map { _ in try zeroPoints(weight + "_zero_point", scaleShape: s.shape, count: values.count) }
        return WeightScales(layout: layout, values: values, zeroPoints: zeros, matrixRows: matrixRows, cols: cols)
    }

    /// A scale tensor (F32, F16 or BF16) as f32, every value finite.
    private func finiteScales(_ file: SafetensorsFile, _ s: TensorEntry) throws -> [Float] {
        guard let dtype = s.dtype else { throw ModelError.unsupportedDType(tensor: s.name, dtype: s.dtypeName) }
        var values = [Float](repeating: 0, count: s.elementCount)
        let src = file.pointer(s)
        values.withUnsafeMutableBufferPointer { out in
            if dtype == .f32 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: src, byteCount: out.count * 4) }
            else { Self.widen(src, dtype, out.count, into: out.baseAddress!) }
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ModelError.badTensor(tensor: s.name, reason: "scale \(bad) is \(values[bad]); scales must be finite")
        }
        return values
    }

    /// compressed-tensors' zero points `name`, one per scale of a [..., R, G] (or [..., R]) scale tensor in its order:
    /// int8 as they are, or for pack-quantized weights as pack_to_int32 packs them along R (int32 [..., ⌈R · bits /
    /// 32⌉, G], each column a dense stream of fields stored plus 2^(bits−1)).
    private func zeroPoints(_ name: String, scaleShape: [Int], count: Int) throws -> [Float] {
        let (file, z) = try locate(name)
        let p = file.pointer(z)
        switch z.dtypeName {
        case "I8":
            guard z.elementCount == count else { throw ModelError.shapeMismatch(tensor: name, expected: scaleShape, found: z.shape) }
            return (0..<count).map { Float(Int8(bitPattern: p.load(fromByteOffset: $0, as: UInt8.self))) }
        case "I32":
            guard let bits = quantization?.packedBits else { throw ModelError.unsupportedDType(tensor: name, dtype: z.dtypeName) }
            let shape = scaleShape.count >= 2 ? scaleShape : scaleShape + [1]
            let G = shape[shape.count - 1], R = shape[shape.count - 2], lead = Array(shape.dropLast(2))
            let words = (R * bits + 31) / 32, matrices = lead.reduce(1, *)
            let expected = lead + [words, G]
            guard z.shape == expected || (scaleShape.count < 2 && z.shape == [words]) else {
                throw ModelError.shapeMismatch(tensor: name, expected: expected, found: z.shape)
            }
            let offset = 1 << (bits - 1)
            var out = [Float](repeating: 0, count: count)
            for m in 0..<matrices {
                for g in 0..<G {
                    for r in 0..<R {
                        let v = WeightScales.denseField(r, bits: bits) {
                            UInt32(littleEndian: p.loadUnaligned(fromByteOffset: ((m * words + $0) * G + g) * 4, as: UInt32.self))
                        }
                        out[(m * R + r) * G + g] = Float(Int(v) - offset)
                    }
                }
            }
            return out
        default:
            throw ModelError.unsupportedDType(tensor: name, dtype: z.dtypeName)
        }
    }
}
