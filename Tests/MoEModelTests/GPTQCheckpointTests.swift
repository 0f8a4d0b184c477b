import CKernels
import Foundation
import MoECore
import MoETestSupport
import Testing
@testable import MoEModel

/// GPTQ and AWQ checkpoints (Tests/Fixtures/gptq-awq, quantised and saved by GPTQModel): 4-bit GPTQ with act order
/// and zero points stored v1-style, 8-bit with one group a row, 2-bit, 3-bit with zero points (codes straddling
/// words), and AWQ's GEMM layout with Qwen2-MoE's shared expert, against transformers' logits on the weights
/// GPTQModel's own kernels dequantise.
struct GPTQCheckpointTests {
    static let dir = Fixtures.root.appendingPathComponent("gptq-awq")
    static let names = ["qwen3-moe-gptq-int4-actorder", "qwen3-moe-gptq-int8-rows", "qwen3-moe-gptq-int2", "qwen3-moe-gptq-int3",
                        "qwen2-moe-awq-int4"]

    @Test(arguments: names)
    func logitsAndGreedyTokensMatchTransformers(_ name: String) throws {
        try OddShapeTests.expectTransformersOutputs(Self.dir.appendingPathComponent(name), tolerance: 1e-4)
    }

    /// A 4-bit checkpoint's weights are (q − z) · s with |q − z| ≤ 15 and an f16 s: int8 and int4z hold every group
    /// of 32 exactly when a group of the checkpoint spans it, and int4 too when the codes are symmetric (q − z in
    /// −8 … 7). Under act order, whose groups are scattered over the inputs, the columns are held sorted by group.
    @Test(arguments: [("qwen2-moe-awq-int4", WeightFormat.int8), ("qwen3-moe-gptq-int2", .int8), ("qwen3-moe-gptq-int2", .int4),
                      ("qwen2-moe-awq-int4", .int4z), ("qwen3-moe-gptq-int3", .int4z), ("qwen3-moe-gptq-int2", .int4z),
                      ("qwen3-moe-gptq-int4-actorder", .int4z), ("qwen3-moe-gptq-int4-actorder", .int8)])
    func fourBitGroupsAreHeldExactly(_ name: String, _ format: WeightFormat) throws {
        let ckpt = try Checkpoint(directory: Self.dir.appendingPathComponent(name))
        let quantised = ckpt.tensorNames.filter { $0.hasSuffix(".qweight") }
        #expect(quantised.count > 10)
        var reordered = 0
        defer { #expect((reordered > 0) == name.hasSuffix("actorder"), "\(reordered) layers held in group order") }
        for q in quantised {
            let base = String(q.dropLast(".qweight".count)), scales = try #require(ckpt.entry(base + ".scales"))
            let out = scales.shape[1], inputs = ckpt.quantization!.groupedInt!.packing == .awq
                ? try #require(ckpt.entry(q)).shape[0] : try #require(ckpt.entry(q)).shape[0] * 32 / ckpt.quantization!.groupedInt!.bits
            let m = try ckpt.matrix(base + ".weight", shape: [out, inputs])
            let held = try #require(m.converted(to: format))
            #expect(held.heldOrder?.index == m.groupOrder?.index, "\(base): columns held in group order")
            if m.groupOrder != nil { reordered += 1 }
            var back = [Float](repeating: 0, count: inputs)
            for r in 0..<out {
                held.dequantizedRow(r, into: &back)
                #expect(back == Array(UnsafeBufferPointer(start: m.base + r * inputs, count: inputs)), "\(name) \(base) row \(r) as \(format)")
            }
        }
    }

    /// The rounding kernel itself, on every instruction set: k · s for k in −8 … 7 (int4), −15 … 15 (int8) or any 16
    /// consecutive integers (int4z) and an f16 s come back exactly, while a group one value off that grid is rounded
    /// as before.
    @Test(arguments: [0, 1, 2])   // KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512
    func smallIntegerStepsOfAnF16ScaleRoundTrip(isa: Int) {
        guard Int32(isa) <= kern_isa_detected() else { return }
        kern_isa_force(Int32(isa))
        defer { kern_isa_force(-1) }
        var rng = SeededRNG(seed: 9)
        for (format, lo, hi) in [(WeightFormat.int4, -8, 7), (.int8, -15, 15), (.int4z, -8, 7), (.int4z, -3, 12), (.int4z, -15, 0)] {
            for _ in 0..<200 {
                let s = Float(Float16(Float(rng.next() % 10_000 + 1) * 1e-5))
                var x = (0..<32).map { _ in Float(Int(rng.next() % UInt64(hi - lo + 1)) + lo) * s }
                var q = [UInt8](repeating: 0, count: format.valueBytes(32)), sc: [UInt16] = [0], back = [Float](repeating: 0, count: 32)
                #expect(kern_quantize_weights(format.kernelCode, x, 32, &q, &sc) == 0)
                kern_dequantize(format.kernelCode, q, sc, 32, &back)
                #expect(back == x, "\(format) step \(s)")
                x[5] += s / 3
                #expect(kern_quantize_weights(format.kernelCode, x, 32, &q, &sc) == 0)
                kern_dequantize(format.kernelCode, q, sc, 32, &back)
                #expect(back != x)
            }
        }
    }

    // MARK: layouts (pure)

    /// GPTQ: qweight packs inputs down a column (eight 4-bit codes of one output a word); qzeros packs outputs along a
    /// row; v1 zero points are stored less one and restored by adding 0x11111111 to the word, so a stored 15 carries
    /// into the next field as GPTQModel's does; g_idx picks each input's group.
    @Test func gptqCodesZeroPointsAndGroupsUnpackAsGPTQModelDoes() {
        let out = 8, inputs = 16
        // Input i, output o: code (i + o) % 16.
        var qweight = [UInt32](repeating: 0, count: inputs / 8 * out)
        for i in 0..<inputs { for o in 0..<out { qweight[(i / 8) * out + o] |= UInt32((i + o) % 16) << UInt32(i % 8 * 4) } }
        // Two groups; stored (v1) zero fields: group 0 all 7, group 1 output o stores o + 8, output 7 stores 15.
        var qzeros: [UInt32] = [0x7777_7777, 0]
        for o in 0..<out { qzeros[1] |= UInt32(min(o + 8, 15)) << UInt32(o * 4) }
        let scales = (0..<(2 * out)).map { Float($0 + 1) }
        let group: [Int32] = (0..<inputs).map { Int32($0 % 2) }                 // act order: inputs alternate groups
        for v1 in [true, false] {
            let layout = GroupedIntLayout(packing: .gptq(v1: v1), bits: 4, groupSize: 8)
            var w = [Float](repeating: 0, count: out * inputs)
            qweight.withUnsafeBytes { q in qzeros.withUnsafeBytes { z in
                layout.dequantize(qweight: q.baseAddress!, qzeros: z.baseAddress!, scales: scales, group: group,
                                  out: out, inputs: inputs, r0: 0, rows: out, into: &w)
            } }
            // Restored zero points: 7 + 1 = 8 in group 0; in group 1 o + 8 + 1, the last field 15 + 1 wrapping to 0
            // (its carry leaves the word). Without v1, as stored.
            func zero(_ g: Int, _ o: Int) -> Int {
                let stored = g == 0 ? 7 : min(o + 8, 15)
                return v1 ? (stored + 1) % 16 : stored
            }
            for o in 0..<out {
                for i in 0..<inputs {
                    let g = i % 2
                    #expect(w[o * inputs + i] == Float((i + o) % 16 - zero(g, o)) * scales[g * out + o], "v1 \(v1) o \(o) i \(i)")
                }
            }
        }
        // A carry from a field that wraps: stored 15 in field 0 becomes 0 and field 1 gains 1 more.
        let layout = GroupedIntLayout(packing: .gptq(v1: true), bits: 4, groupSize: nil)
        #expect((UInt32(0x0000_003F) &+ layout.v1Correction) & 0xFF == 0x50)
    }

    /// GPTQ at 3 bits: 32 codes in 3 words, down each output's column (qweight) or along a group's row (qzeros), fields
    /// 10 and 21 straddling words; v1 zero points restored field by field, 7 + 1 wrapping to 0 without a carry.
    @Test func threeBitGPTQStreamsUnpackAsGPTQModelDoes() {
        let out = 32, inputs = 32
        func stream(_ values: [Int]) -> [UInt32] {
            var words = [UInt32](repeating: 0, count: values.count * 3 / 32)
            for (i, v) in values.enumerated() {
                let bit = 3 * i
                words[bit / 32] |= UInt32(v) << UInt32(bit % 32)
                if bit % 32 > 29 { words[bit / 32 + 1] |= UInt32(v) >> UInt32(32 - bit % 32) }
            }
            return words
        }
        var qweight = [UInt32](repeating: 0, count: 3 * out)
        for o in 0..<out {
            for (k, w) in stream((0..<inputs).map { (i: Int) -> Int in (i + 2 * o) % 8 }).enumerated() { qweight[k * out + o] = w }
        }
        let qzeros = stream((0..<out).map { $0 % 8 })
        let scales = (0..<out).map { Float($0) + 0.5 }
        for v1 in [true, false] {
            var w = [Float](repeating: 0, count: out * inputs)
            qweight.withUnsafeBytes { q in qzeros.withUnsafeBytes { z in
                GroupedIntLayout(packing: .gptq(v1: v1), bits: 3, groupSize: nil)
                    .dequantize(qweight: q.baseAddress!, qzeros: z.baseAddress!, scales: scales, group: nil,
                                out: out, inputs: inputs, r0: 0, rows: out, into: &w)
            } }
            for o in 0..<out {
                let zero = v1 ? (o % 8 + 1) % 8 : o % 8
                let want: [Float] = (0..<inputs).map { (i: Int) -> Float in Float((i + 2 * o) % 8 - zero) * scales[o] }
                #expect(Array(w[(o * inputs)..<((o + 1) * inputs)]) == want, "v1 \(v1) output \(o)")
            }
        }
    }

    /// AWQ: eight outputs of one input a word, in the order 0, 2, 4, 6, 1, 3, 5, 7; zero points the same way per group
    /// of inputs.
    @Test func awqCodesUnpackInAutoAWQsOrder() {
        let out = 8, inputs = 4
        let order = [0, 2, 4, 6, 1, 3, 5, 7]
        func pack(_ codes: [Int]) -> UInt32 { (0..<8).reduce(UInt32(0)) { $0 | UInt32(codes[order[$1]]) << UInt32($1 * 4) } }
        let qweight = (0..<inputs).map { i in pack((0..<out).map { o in (3 * i + o) % 16 }) }
        let qzeros = [pack((0..<out).map { $0 + 4 }), pack((0..<out).map { 15 - $0 })]
        let scales = (0..<(2 * out)).map { Float($0) * 0.5 + 1 }
        let layout = GroupedIntLayout(packing: .awq, bits: 4, groupSize: 2)
        var w = [Float](repeating: 0, count: 3 * inputs)
        qweight.withUnsafeBytes { q in qzeros.withUnsafeBytes { z in
            layout.dequantize(qweight: q.baseAddress!, qzeros: z.baseAddress!, scales: scales, group: nil,
                              out: out, inputs: inputs, r0: 5, rows: 3, into: &w)          // outputs 5, 6, 7
        } }
        for (k, o) in (5..<8).enumerated() {
            for i in 0..<inputs {
                let g = i / 2, z = g == 0 ? o + 4 : 15 - o
                #expect(w[k * inputs + i] == Float((3 * i + o) % 16 - z) * scales[g * out + o], "o \(o) i \(i)")
            }
        }
    }

    @Test func quantizationConfigsAreReadAndCheckedWithReasons() throws {
        func parse(_ q: String) throws -> GroupedIntLayout? {
            try QuantizationConfig(configJSON: Data(#"{"quantization_config": \#(q)}"#.utf8))?.groupedInt
        }
        // AutoGPTQ's releases say nothing of the format: v1.
        #expect(try parse(#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false, "sym": true}"#)
                == GroupedIntLayout(packing: .gptq(v1: true), bits: 4, groupSize: 128))
        #expect(try parse(#"{"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"}"#)
                == GroupedIntLayout(packing: .gptq(v1: false), bits: 8, groupSize: nil))
        #expect(try parse(#"{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "GEMM"}"#)
                == GroupedIntLayout(packing: .awq, bits: 4, groupSize: 128))
        // experts.dtype auto: about the checkpoint's size, int4z where codes have zero points.
        func held(_ q: String) throws -> WeightFormat? { try QuantizationConfig(configJSON: Data(#"{"quantization_config": \#(q)}"#.utf8))?.heldAs }
        #expect(try held(#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true}"#) == .int4)
        #expect(try held(#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": false}"#) == .int4z)
        #expect(try held(#"{"quant_method": "gptq", "bits": 8, "group_size": 128, "sym": false}"#) == .int8)
        #expect(try held(#"{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true}"#) == .int4z)
        #expect(try held(#"{"quant_method": "mxfp4"}"#) == .mxfp4 && (try held(#"{"quant_method": "fp8"}"#)) == .int8)
        #expect(try held(#"{"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 32}}}}"#) == .int4z)
        #expect(try held(#"{"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 32}}}}"#) == .int4)
        for (q, reason) in [(#"{"quant_method": "gptq", "bits": 5, "group_size": 128}"#, "GPTQ weights of 5 bits"),
                            (#"{"quant_method": "gptq", "bits": 4, "group_size": 0}"#, "group_size"),
                            (#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"}"#, "checkpoint_format 'marlin'"),
                            (#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "dynamic": {"-:.*mlp.*": {}}}"#, "dynamic"),
                            (#"{"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}"#, "AWQ version 'gemv'"),
                            (#"{"quant_method": "awq", "bits": 8, "group_size": 128}"#, "AWQ weights of 8 bits")] {
            do {
                _ = try parse(q)
                Issue.record("accepted: \(q)")
            } catch {
                #expect("\(error)".contains(reason), "\(error)")
            }
        }
    }

    // MARK: broken checkpoints

    @Test func codesOfTheWrongShapeSayTheShapeExpected() throws {
        // q_proj is [64 out, 64 in]: 4-bit GPTQ codes are [8, 64].
        let name = "model.layers.0.self_attn.q_proj.qweight"
        let e = try CheckpointErrorTests().loadError("gptq-awq/qwen3-moe-gptq-int4-actorder", claiming: [16, 32], for: name)
        #expect(e == "tensor \(name) has shape [16, 32], expected [8, 64]", "\(e ?? "no error")")
    }

    @Test func aGroupIndexOutsideTheScalesIsNamed() throws {
        let dir = try Fixtures.copy("gptq-awq/qwen3-moe-gptq-int4-actorder")
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = "model.layers.1.mlp.experts.2.up_proj.g_idx"
        // Point g_idx at q_proj's scales' bytes: f16 patterns read as int32 are far outside 2 groups.
        try CheckpointErrorTests().editHeader(dir) { h in
            var e = h[name] as! [String: Any], s = h["model.layers.0.self_attn.q_proj.scales"] as! [String: Any]
            e["data_offsets"] = s["data_offsets"]
            h[name] = e
        }
        let e = CheckpointErrorTests().loadError(dir)
        #expect(e?.contains(name) == true && e?.contains("outside the 2 groups") == true, "\(e ?? "no error")")
    }
}
