import Foundation
import MoECore

/// The element types of weights stored with scales (safetensors dtypes F8_E4M3 and F8_E5M2 of FP8 checkpoints, I8 of
/// compressed-tensors' int-quantized ones); each value is the element times its scale.
public enum ScaledFormat: String, Sendable, CaseIterable {
    /// 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN; largest finite ±448
    /// (torch's float8_e4m3fn, what DeepSeek-V3/R1, Qwen3-FP8 and FBGEMM / compressed-tensors FP8 use).
    case e4m3 = "F8_E4M3"
    /// 1 sign, 5 exponent (bias 15), 2 mantissa bits: the top byte of an IEEE half.
    case e5m2 = "F8_E5M2"
    /// A signed byte (compressed-tensors' int8).
    case int8 = "I8"

    /// The value of every byte, indexed by the byte.
    public var table: [Float] {
        switch self {
        case .e4m3: return Self.e4m3Table
        case .e5m2: return Self.e5m2Table
        case .int8: return Self.int8Table
        }
    }

    private static let int8Table: [Float] = (0..<256).map { Float(Int8(bitPattern: UInt8($0))) }

    public func value(_ byte: UInt8) -> Float { table[Int(byte)] }

    private static let e4m3Table: [Float] = (0..<256).map { b in
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let exponent = (b >> 3) & 0xF, mantissa = Float(b & 7)
        if exponent == 0xF && b & 7 == 7 { return .nan }
        if exponent == 0 { return sign * mantissa / 8 * 0x1p-6 }           // subnormal: 0.mmm × 2^(1-7)
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    private static let e5m2Table: [Float] = (0..<256).map { b in Float(Float16(bitPattern: UInt16(b) << 8)) }
}

/// How the scales of float8 or integer weights map onto their values; a stored value is element × scale (DeepSeek
/// names its block scales `weight_scale_inv`, but they multiply, as in its weight_dequant and transformers' and
/// vLLM's loaders).
public struct WeightScales: Sendable, Equatable {
    public enum Layout: Sendable, Equatable {
        /// One scale for the whole tensor (compressed-tensors' "tensor" strategy).
        case tensor
        /// One scale per row of the tensor viewed as [rows, cols] (FBGEMM FP8, compressed-tensors' "channel").
        case rows
        /// One scale per `rows` × `cols` block of each matrix (quant_method fp8's weight_block_size); a matrix of R
        /// rows and C columns has ceil(R / rows) × ceil(C / cols) of them, row-major, its last blocks partial.
        case blocks(rows: Int, cols: Int)
    }

    public let layout: Layout
    /// Row-major: the blocks of each matrix in turn (a stacked [E, R, C] tensor has E grids).
    public let values: [Float]
    /// compressed-tensors' asymmetric weights: one zero point per scale, in the same order; a stored value is
    /// (element − zero point) × scale.
    public let zeroPoints: [Float]?
    /// Rows of one matrix (R; the tensor's second-last dimension) and its columns (C).
    public let matrixRows: Int, cols: Int

    public init(layout: Layout, values: [Float], zeroPoints: [Float]? = nil, matrixRows: Int, cols: Int) {
        self.layout = layout
        self.values = values
        self.zeroPoints = zeroPoints
        self.matrixRows = matrixRows
        self.cols = cols
    }

    /// Field `index` of a dense stream of `bits`-bit fields (1 … 8) in little-endian int32 words, as compressed-tensors'
    /// pack_to_int32 writes each row: field i at bits [i · bits, (i + 1) · bits), a field may straddle two words.
    /// `word(k)` reads the stream's k-th word.
    @inline(__always)
    static func denseField(_ index: Int, bits: Int, word: (Int) -> UInt32) -> UInt32 {
        let bit = index * bits, k = bit / 32, shift = UInt32(bit % 32), mask = UInt32((1 << bits) - 1)
        var v = word(k) >> shift
        if Int(shift) + bits > 32 { v |= word(k + 1) << (32 - shift) }
        return v & mask
    }

    /// The shape the scale tensor of a weight of `shape` must have for `layout` (`.rows` also accepts
    /// the same count without the trailing 1, `.tensor` any shape of one element).
    public static func expectedShape(of shape: [Int], layout: Layout) -> [Int] {
        switch layout {
        case .tensor:
            return [1]
        case .rows:
            return Array(shape.dropLast()) + [1]
        case .blocks(let br, let bc):
            let r = shape.count >= 2 ? shape[shape.count - 2] : 1, c = shape.last ?? 1
            return Array(shape.dropLast(2)) + [(r + br - 1) / br, (c + bc - 1) / bc]
        }
    }

    /// Rows [firstRow, firstRow + rows) of a tensor packed as compressed-tensors' pack_to_int32 writes it: each row's
    /// `bits`-bit values (1 … 8) a dense stream from bit 0 of its first little-endian int32 word (see denseField),
    /// stored plus 2^(bits−1); `wordsPerRow` words a row. As f32 times their scales (`out` holds rows × cols).
    public func dequantizePacked(_ words: UnsafeRawPointer, bits: Int, wordsPerRow: Int, firstRow: Int, rows: Int,
                                 into out: UnsafeMutablePointer<Float>) {
        let offset = 1 << (bits - 1)
        var elements = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            let src = words + (firstRow + r) * wordsPerRow * 4
            for c in 0..<cols {
                let v = Self.denseField(c, bits: bits) {
                    UInt32(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))
                }
                elements[c] = Float(Int(v) - offset)
            }
            scale(elements, row: firstRow + r, into: out + r * cols)
        }
    }

    /// One row's elements, less their zero points, times their scales.
    private func scale(_ v: [Float], row: Int, into dst: UnsafeMutablePointer<Float>) {
        let zeros = zeroPoints ?? []
        values.withUnsafeBufferPointer { s in
            switch layout {
            case .tensor, .rows:
                let i = layout == .tensor ? 0 : row
                let k = s[i], z = zeros.isEmpty ? 0 : zeros[i]
                for c in 0..<cols { dst[c] = (v[c] - z) * k }
            case .blocks(let br, let bc):
                let gridCols = (cols + bc - 1) / bc, gridRows = (matrixRows + br - 1) / br
                let first = ((row / matrixRows) * gridRows + (row % matrixRows) / br) * gridCols
                let scales = s.baseAddress! + first
                if zeros.isEmpty {
                    for c in 0..<cols { dst[c] = v[c] * scales[c / bc] }
                } else {
                    for c in 0..<cols { dst[c] = (v[c] - zeros[first + c / bc]) * scales[c / bc] }
                }
            }
        }
    }

    /// Rows [firstRow, firstRow + rows) of the tensor viewed as [all rows, cols], as f32 (`out` holds rows × cols).
    public func dequantize(_ q: UnsafePointer<UInt8>, format: ScaledFormat, firstRow: Int, rows: Int,
                           into out: UnsafeMutablePointer<Float>) {
        let table = format.table
        var elements = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            let src = q + r * cols
            for c in 0..<cols { elements[c] = table[Int(src[c])] }
            scale(elements, row: firstRow + r, into: out + r * cols)
        }
    }
}

/// A checkpoint's `quantization_config`, where it has one. float8 or integer weights with scales load (vLLM's and
/// transformers' "fp8" block format, FBGEMM's per-row FP8, compressed-tensors' float-quantized, int-quantized and
/// pack-quantized formats with tensor, channel, group or block scales, OpenAI's MXFP4 experts, GPTQ and AWQ); their
/// values are turned into f32 at load and then held in the format the cluster config asks for, as any checkpoint's.
public struct QuantizationConfig: Sendable {
    public let method: String
    /// quant_method fp8's weight_block_size [rows, cols]: transformers' default 128 × 128 where absent, nil where it
    /// is null (one `weight_scale_inv` per tensor, as transformers' FP8Linear then holds it).
    public let blockSize: (rows: Int, cols: Int)?

    /// compressed-tensors' weight scales in blocks: its "block" strategy's block_structure, or (1, group_size) for
    /// its "group" strategy; nil for its "channel" and "tensor" strategies (and other methods), whose `weight_scale`
    /// holds one scale per row or one in all.
    public let scaleBlock: (rows: Int, cols: Int)?

    /// compressed-tensors' pack-quantized weights: bits per value (2 … 8), a dense stream of int32 words a row.
    public let packedBits: Int?

    /// gptq / awq: every linear layer's integer codes, scales and zero points (see GroupedIntLayout).
    public let groupedInt: GroupedIntLayout?

    /// Bits per value of integer weights stored packed (GPTQ, AWQ, compressed-tensors' pack-quantized).
    public var integerBits: Int? { groupedInt?.bits ?? packedBits }

    /// Whether integer codes are symmetric (no zero points: GPTQ's sym, AWQ without zero_point, compressed-tensors'
    /// symmetric schemes); true for other methods.
    public let symmetric: Bool

    /// The weight format that holds this checkpoint's quantised tensors at about their size (where auto starts, see
    /// Checkpoint.heldFormat and Matrix.autoFormat()): MXFP4's as mxfp4, integer weights of 4 bits or fewer as int4
    /// where their codes are symmetric and int4z where they have zero points (both exactly where each run of 32
    /// inputs lies in one group), 8-bit integer and float8 as int8.
    public var heldAs: WeightFormat {
        if method == "mxfp4" { return .mxfp4 }
        if let bits = integerBits, bits <= 4 { return symmetric ? .int4 : .int4z }
        return .int8
    }

    /// The method as its users write it.
    public var displayName: String {
        ["gptq": "GPTQ", "awq": "AWQ", "mxfp4": "MXFP4", "fp8": "FP8", "fbgemm_fp8": "FBGEMM FP8"][method] ?? method
    }

    /// mxfp4: OpenAI's gpt-oss experts (`NAME_blocks` / `NAME_scales`, see MXFP4); its other tensors are unquantised.
    public static let supportedMethods = ["fp8", "fbgemm_fp8", "compressed-tensors", "mxfp4", "gptq", "awq"]
    /// float8 or integer weights with scales (integer ones with or without zero points).
    static let compressedTensorsFormats = ["float-quantized", "int-quantized", "naive-quantized", "pack-quantized"]

    /// compressed-tensors' weight schemes, by config group name.
    static func compressedTensorsWeights(_ dict: [String: Any]) -> [(group: String, weights: [String: Any])] {
        ((dict["config_groups"] as? [String: Any]) ?? [:]).sorted { $0.key < $1.key }.compactMap { name, g in
            ((g as? [String: Any])?["weights"] as? [String: Any]).map { (name, $0) }
        }
    }

    /// The bits of pack-quantized weights (every config group's).
    static func compressedTensorsBits(_ dict: [String: Any]) throws -> Int {
        let bits = Set(compressedTensorsWeights(dict).compactMap { ($0.weights["num_bits"] as? NSNumber)?.intValue })
        guard bits.count == 1, let b = bits.first, (2...8).contains(b) else {
            throw ModelError.unsupported("compressed-tensors pack-quantized weights of \(bits.sorted()) bits: 2 to 8 bits (one for every group) load")
        }
        return b
    }

    /// A [rows, cols] pair of positive integers.
    static func pair(_ v: Any?) -> (rows: Int, cols: Int)? {
        guard let a = v as? [Any], a.count == 2, let r = (a[0] as? NSNumber)?.intValue, let c = (a[1] as? NSNumber)?.intValue,
              r > 0, c > 0 else { return nil }
        return (r, c)
    }

    /// nil where config.json has no quantization_config; throws for methods (and compressed-tensors formats) that do
    /// not load.
    public init?(configJSON data: Data) throws {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let q = obj["quantization_config"] else { return nil }
        guard let dict = q as? [String: Any] else {
            throw ModelError.badConfig(file: "config.json", reason: "quantization_config is not an object")
        }
        guard let method = dict["quant_method"] as? String else {
            throw ModelError.badConfig(file: "config.json", reason: "quantization_config has no quant_method")
        }
        guard Self.supportedMethods.contains(method) else {
            throw ModelError.unsupported("quantization_config.quant_method '\(method)': only unquantised (F32, F16, BF16), "
                + "FP8, compressed-tensors, MXFP4, GPTQ and AWQ checkpoints (quant_method \(Self.supportedMethods.joined(separator: ", "))) load; start "
                + "from the unquantised checkpoint and set experts.dtype / attention.dtype to int8 or int4 to quantise at load")
        }
        groupedInt = method == "gptq" ? try Self.gptqLayout(dict) : method == "awq" ? try Self.awqLayout(dict) : nil
        switch method {
        case "gptq": symmetric = dict["sym"] as? Bool ?? true
        case "awq": symmetric = !(dict["zero_point"] as? Bool ?? true)
        case "compressed-tensors": symmetric = Self.compressedTensorsWeights(dict).allSatisfy { $0.weights["symmetric"] as? Bool ?? true }
        default: symmetric = true
        }
        var bits: Int?
        if method == "compressed-tensors" {
            let format = dict["format"] as? String ?? "(none)"
            guard Self.compressedTensorsFormats.contains(format) else {
                throw ModelError.unsupported("compressed-tensors format '\(format)': \(Self.compressedTensorsFormats.joined(separator: ", ")) "
                    + "load; start from the unquantised checkpoint and quantise at load instead")
            }
            // Zero points are read for integer weights (llm-compressor's W4A16_ASYM, W8A16 asymmetric schemes).
            guard Self.compressedTensorsWeights(dict).allSatisfy({ ($0.weights["symmetric"] as? Bool ?? true) || ($0.weights["type"] as? String ?? "int") == "int" }) else {
                throw ModelError.unsupported("compressed-tensors asymmetric float weights (zero points on float8): symmetric float and any integer weights load")
            }
            if format == "pack-quantized" { bits = try Self.compressedTensorsBits(dict) }
        }
        self.method = method
        packedBits = bits
        scaleBlock = try Self.compressedTensorsBlock(dict)
        if dict["weight_block_size"] is NSNull {
            blockSize = nil
        } else if let b = dict["weight_block_size"] {
            guard let block = Self.pair(b) else {
                throw ModelError.badConfig(file: "config.json", reason: "quantization_config.weight_block_size must be [rows, cols] of positive integers (got \(b))")
            }
            blockSize = block
        } else {
            blockSize = (128, 128)
        }
    }

    /// group_size: −1 (one group per row) as nil.
    static func groupSize(_ dict: [String: Any], method: String) throws -> Int? {
        guard let n = (dict["group_size"] as? NSNumber)?.intValue, n == -1 || n > 0 else {
            throw ModelError.badConfig(file: "config.json", reason: "quantization_config (\(method)) needs group_size: a positive number of inputs, or -1 for one group per row (got \(dict["group_size"] ?? "none"))")
        }
        return n == -1 ? nil : n
    }

    /// GPTQ as AutoGPTQ and GPTQModel write it: bits, group_size, and checkpoint_format (GPTQModel's newer key
    /// `format`) gptq (v1, the default) or gptq_v2.
    static func gptqLayout(_ dict: [String: Any]) throws -> GroupedIntLayout {
        let bits = (dict["bits"] as? NSNumber)?.intValue ?? 0
        guard [2, 3, 4, 8].contains(bits) else {
            throw ModelError.unsupported("GPTQ weights of \(dict["bits"] ?? "unstated") bits: 2, 3, 4 and 8 load (GPTQModel writes 5 to 7 in its planar layout)")
        }
        let format = (dict["checkpoint_format"] ?? dict["format"]) as? String ?? "gptq"
        guard format == "gptq" || format == "gptq_v2" else {
            throw ModelError.unsupported("GPTQ checkpoint_format '\(format)': gptq and gptq_v2 load (marlin, bitblas and planar layouts do not)")
        }
        if let pack = dict["pack_dtype"] as? String, pack != "int32" {
            throw ModelError.unsupported("GPTQ pack_dtype '\(pack)': codes packed in int32 words load")
        }
        if let dynamic = dict["dynamic"] as? [String: Any], !dynamic.isEmpty {
            throw ModelError.unsupported("GPTQ dynamic per-module overrides (quantization_config.dynamic): one bits and group_size for every layer load")
        }
        return GroupedIntLayout(packing: .gptq(v1: format == "gptq"), bits: bits, groupSize: try groupSize(dict, method: "gptq"))
    }

    /// AWQ as AutoAWQ writes it: 4 bits, version (GPTQModel: format) gemm. Its layers hold qzeros whether or not
    /// zero_point is set (GPTQModel's symmetric AWQ stores the middle code), and they are subtracted either way, as
    /// GPTQModel's dequantize_gemm does.
    static func awqLayout(_ dict: [String: Any]) throws -> GroupedIntLayout {
        let bits = (dict["bits"] ?? dict["w_bit"]) as? NSNumber
        guard bits?.intValue == 4 else {
            throw ModelError.unsupported("AWQ weights of \(bits.map { "\($0)" } ?? "unstated") bits: 4 load")
        }
        let version = ((dict["version"] ?? dict["format"]) as? String ?? "gemm").lowercased()
        guard version == "gemm" else {
            throw ModelError.unsupported("AWQ version '\(version)': the GEMM layout loads (gemv, gemv_fast and llm-awq pack codes otherwise)")
        }
        return GroupedIntLayout(packing: .awq, bits: 4, groupSize: try groupSize(dict, method: "awq"))
    }

    /// The scale blocks of compressed-tensors' weight schemes (`config_groups.*.weights`), which must agree.
    static func compressedTensorsBlock(_ dict: [String: Any]) throws -> (rows: Int, cols: Int)? {
        let blocks = try compressedTensorsWeights(dict).map { name, w -> (rows: Int, cols: Int)? in
            switch w["strategy"] as? String ?? "tensor" {
            case "tensor", "channel":
                return nil
            case "group":
                guard let n = (w["group_size"] as? NSNumber)?.intValue, n > 0 else {
                    throw ModelError.badConfig(file: "config.json", reason: "config_groups.\(name).weights: strategy group needs a positive group_size")
                }
                return (1, n)
            case "block":
                guard let b = pair(w["block_structure"]) else {
                    throw ModelError.badConfig(file: "config.json", reason: "config_groups.\(name).weights: strategy block needs block_structure [rows, cols]")
                }
                return b
            case let strategy:
                throw ModelError.unsupported("compressed-tensors weight strategy '\(strategy)' (config_groups.\(name)): tensor, channel, group and block load")
            }
        }
        guard let first = blocks.first else { return nil }
        guard blocks.allSatisfy({ $0?.rows == first?.rows && $0?.cols == first?.cols }) else {
            throw ModelError.unsupported("compressed-tensors config_groups with different weight scale layouts")
        }
        return first
    }
}

/// OCP microscaling FP4 (MXFP4), as OpenAI's gpt-oss release stores its experts: each byte of `NAME_blocks` holds two
/// e2m1 values (low nibble first: 1 sign, 2 exponent, 1 mantissa bit), each run of 32 shares a power of two from
/// `NAME_scales` (an e8m0 byte s: 2^(s − 127); 255 is NaN).
public enum MXFP4 {
    /// e2m1's value of each nibble.
    public static let values: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]

    /// The scale of e8m0 byte `s`, nil for 255 (NaN).
    public static func scale(_ s: UInt8) -> Float? {
        s == 255 ? nil : Float(sign: .plus, exponent: Int(s) - 127, significand: 1)
    }

    /// `rows` rows of `cols` values (cols a multiple of 32): row r's blocks at blocks + r · cols / 2, its scales at
    /// scales + r · cols / 32, as f32 into out [rows × cols]. Returns the index of the first NaN scale met, if any.
    public static func dequantize(blocks: UnsafePointer<UInt8>, scales: UnsafePointer<UInt8>, rows: Int, cols: Int,
                                  into out: UnsafeMutablePointer<Float>) -> Int? {
        let groups = rows * cols / 32
        for g in 0..<groups {
            guard let k = scale(scales[g]) else { return g }
            let src = blocks + g * 16, dst = out + g * 32
            for i in 0..<16 {
                dst[2 * i] = values[Int(src[i] & 15)] * k
                dst[2 * i + 1] = values[Int(src[i] >> 4)] * k
            }
        }
        return nil
    }
}
