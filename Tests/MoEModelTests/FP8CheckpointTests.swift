import Foundation
import MoETestSupport
import Testing
@testable import MoEModel

/// FP8 checkpoints (Tests/Fixtures/fp8): float8 e4m3 weights with DeepSeek-style block scales (`weight_scale_inv`,
/// whole and ragged blocks, f32 and bf16 scales), one scale per tensor (weight_block_size null), FBGEMM-style row
/// scales (`weight_scale`) and compressed-tensors' block and group scales, against transformers' logits on the same
/// weights; every float8 byte against torch's value.
struct FP8CheckpointTests {
    static let dir = Fixtures.root.appendingPathComponent("fp8")
    static let names = ["deepseek-v3-fp8-blocks", "qwen3-moe-fp8-ragged-blocks", "mixtral-fp8-per-channel", "olmoe-fp8-per-tensor",
                        "qwen3-moe-fp8-compressed-blocks", "mixtral-fp8-compressed-groups"]

    @Test func everyFloat8ByteHasTorchsValue() throws {
        let data = try Data(contentsOf: Self.dir.appendingPathComponent("fp8-values.json"))
        let ref = try JSONDecoder().decode([String: [UInt32]].self, from: data)
        for (format, key) in [(ScaledFormat.e4m3, "e4m3"), (.e5m2, "e5m2")] {
            let bits = try #require(ref[key])
            #expect(bits.count == 256)
            for (b, want) in bits.enumerated() {
                let got = format.value(UInt8(b)), w = Float(bitPattern: want)
                if w.isNaN { #expect(got.isNaN, "\(key) byte \(b)") } else { #expect(got.bitPattern == want, "\(key) byte \(b): \(got) vs \(w)") }
            }
        }
        #expect(ScaledFormat.e4m3.value(0x7E) == 448 && ScaledFormat.e4m3.value(0x01) == 0x1p-9)
    }

    @Test(arguments: names)
    func logitsAndGreedyTokensMatchTransformers(_ name: String) throws {
        try OddShapeTests.expectTransformersOutputs(Self.dir.appendingPathComponent(name), tolerance: 1e-4)
    }

    /// FP8 weights held as int8 (what a user short of memory asks for): the same greedy tokens as transformers.
    @Test func fp8WeightsHeldAsInt8KeepTheGreedyTokens() throws {
        let d = Self.dir.appendingPathComponent("deepseek-v3-fp8-blocks")
        let g = try OddShapeTests.golden(d)
        let m = try LoadedModel(directory: d, formats: WeightFormats(experts: .int8, dense: .int8))
        #expect(try OddShapeTests.greedy(m, g) == g.greedy)
    }

    /// compressed-tensors' integer checkpoints (Tests/Fixtures/compressed-tensors, made with compressed-tensors' own
    /// quantize and pack): int4 packed eight to an int32 in groups of 32 (W4A16: attention, a dense MLP and the experts),
    /// int8 with a scale per row (W8A8: activations stay as they are), and asymmetric ones with zero points: int4 in
    /// groups of 32 and int3 in groups of 16 (fields straddling words) with zero points packed along rows, int8 with
    /// one per row. Logits against transformers on the weights compressed-tensors decompresses.
    @Test(arguments: ["qwen3-moe-w4a16-groups", "mixtral-w8a8-channels", "mixtral-w4a16-asym-groups",
                      "qwen3-moe-w3a16-asym-groups", "mixtral-w8a16-asym-channels"])
    func compressedTensorsIntegerCheckpointsMatchTransformers(_ name: String) throws {
        try OddShapeTests.expectTransformersOutputs(Fixtures.root.appendingPathComponent("compressed-tensors/\(name)"), tolerance: 1e-4)
    }

    /// Eight 4-bit values to an int32 from bit 0, stored plus 8 (compressed-tensors' pack_to_int32), times each
    /// group's scale; a row's last word may be part-filled.
    @Test func packedInt4ValuesUnpackInOrder() {
        // Row 0: -8, -7, …, -1, 0, 1, 2 (11 values, two words); row 1: 7 then zeros.
        var words: [UInt32] = [0, 0, 0, 0]
        for c in 0..<11 { words[c / 8] |= UInt32(c) << UInt32(c % 8 * 4) }
        words[2] = 15
        for c in 1..<11 { words[2 + c / 8] |= 8 << UInt32(c % 8 * 4) }
        let s = WeightScales(layout: .blocks(rows: 1, cols: 4), values: [1, 10, 100, 2, 2, 2], matrixRows: 2, cols: 11)
        var out = [Float](repeating: 0, count: 22)
        words.withUnsafeBytes { s.dequantizePacked($0.baseAddress!, bits: 4, wordsPerRow: 2, firstRow: 0, rows: 2, into: &out) }
        #expect(Array(out[0..<11]) == [-8, -7, -6, -5, -40, -30, -20, -10, 0, 100, 200])
        #expect(Array(out[11...]) == [14] + [Float](repeating: 0, count: 10))
    }

    /// pack_to_int32's dense stream at 3 bits: field i at bits 3i …, fields 10 and 21 straddling words; zero points
    /// subtract before the scale multiplies.
    @Test func packedInt3FieldsStraddleWordsAndZeroPointsSubtract() {
        // One row of 12 values c − 4 + 4 (stored c), i.e. −4 … 7 minus zero point z per group of 6.
        var bits = [UInt64](repeating: 0, count: 1)
        for c in 0..<12 { bits[0] |= UInt64(c % 8) << UInt64(3 * c) }
        let words: [UInt32] = [UInt32(truncatingIfNeeded: bits[0]), UInt32(truncatingIfNeeded: bits[0] >> 32)]
        let s = WeightScales(layout: .blocks(rows: 1, cols: 6), values: [2, 0.5], zeroPoints: [1, -3], matrixRows: 1, cols: 12)
        var out = [Float](repeating: 0, count: 12)
        words.withUnsafeBytes { s.dequantizePacked($0.baseAddress!, bits: 3, wordsPerRow: 2, firstRow: 0, rows: 1, into: &out) }
        let stored = (0..<12).map { Float($0 % 8 - 4) }
        let want: [Float] = (0..<12).map { (c: Int) -> Float in c < 6 ? (stored[c] - 1) * 2 : (stored[c] + 3) * 0.5 }
        #expect(out == want)
        #expect(WeightScales.denseField(10, bits: 3) { words[$0] } == 2)   // bits 30…32
    }

    // MARK: scale layouts (pure)

    /// Bytes of e4m3 1, 2, 3, … (0x38 = 1.0, +8 per doubling; 0x40 = 2, 0x44 = 3, 0x48 = 4, 0x4A = 5, 0x4C = 6).
    static let one: UInt8 = 0x38, two: UInt8 = 0x40, three: UInt8 = 0x44

    @Test func oneScaleMultipliesTheWholeTensor() {
        let q: [UInt8] = [Self.one, Self.two, Self.three, 0xB8]   // 1, 2, 3, -1
        let s = WeightScales(layout: .tensor, values: [0.5], matrixRows: 2, cols: 2)
        var out = [Float](repeating: 0, count: 4)
        s.dequantize(q, format: .e4m3, firstRow: 0, rows: 2, into: &out)
        #expect(out == [0.5, 1, 1.5, -0.5])
    }

    @Test func rowScalesMultiplyTheirRowsFromAnyFirstRow() {
        let q: [UInt8] = [Self.one, Self.two, Self.three, Self.one]
        let s = WeightScales(layout: .rows, values: [10, 100, 1000], matrixRows: 3, cols: 2)
        var out = [Float](repeating: 0, count: 4)
        s.dequantize(q, format: .e4m3, firstRow: 1, rows: 2, into: &out)   // rows 1 and 2 of 3
        #expect(out == [100, 200, 3000, 1000])
    }

    /// A stacked [2, 3, 5] tensor (two experts of 3 × 5) in blocks of 2 × 2: each expert has a 2 × 3 grid whose
    /// last row and column of blocks are partial; expert 1's rows read expert 1's grid.
    @Test func raggedBlocksOfAStackedTensorFindTheirScales() {
        let (experts, R, C) = (2, 3, 5)
        let grid = WeightScales.expectedShape(of: [experts, R, C], layout: .blocks(rows: 2, cols: 2))
        #expect(grid == [2, 2, 3])
        let values = (0..<12).map { Float($0 + 1) }                      // expert e, block (i, j) → 6e + 3i + j + 1
        let s = WeightScales(layout: .blocks(rows: 2, cols: 2), values: values, matrixRows: R, cols: C)
        let q = [UInt8](repeating: Self.one, count: experts * R * C)
        var all = [Float](repeating: 0, count: experts * R * C)
        s.dequantize(q, format: .e4m3, firstRow: 0, rows: experts * R, into: &all)
        for e in 0..<experts {
            for r in 0..<R {
                for c in 0..<C {
                    #expect(all[(e * R + r) * C + c] == Float(6 * e + 3 * (r / 2) + c / 2 + 1), "expert \(e) row \(r) col \(c)")
                }
            }
        }
        var slice = [Float](repeating: 0, count: R * C)
        s.dequantize(q, format: .e4m3, firstRow: R, rows: R, into: &slice)   // expert 1 alone, as a worker loads it
        #expect(slice == Array(all[(R * C)...]))
    }

    @Test func quantizationConfigIsReadAndCheckedWithReasons() throws {
        func parse(_ json: String) throws -> QuantizationConfig? { try QuantizationConfig(configJSON: Data(json.utf8)) }
        #expect(try parse(#"{"model_type": "mixtral"}"#) == nil)
        let q = try #require(try parse(#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 32]}}"#))
        #expect(q.method == "fp8" && q.blockSize! == (64, 32))
        let defaults = try #require(try parse(#"{"quantization_config": {"quant_method": "fp8"}}"#))
        #expect(defaults.blockSize! == (128, 128))
        let perTensor = try #require(try parse(#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": null}}"#))
        #expect(perTensor.blockSize == nil)
        #expect(try parse(#"{"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}"#)?.groupedInt
                == GroupedIntLayout(packing: .awq, bits: 4, groupSize: 128))
        #expect(throws: ModelError.self) { try parse(#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [0, 128]}}"#) }
        #expect(throws: ModelError.self) { try parse(#"{"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized"}}"#) }
        #expect(try parse(#"{"quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized"}}"#) != nil)
        func ct(_ weights: String) throws -> QuantizationConfig? {
            try parse(#"{"quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": {"weights": "# + weights + "}}}}")
        }
        #expect(try ct(#"{"strategy": "channel"}"#)?.scaleBlock == nil)
        #expect(try ct(#"{"strategy": "block", "block_structure": [128, 64]}"#)?.scaleBlock.map { $0 == (128, 64) } == true)
        #expect(try ct(#"{"strategy": "group", "group_size": 32}"#)?.scaleBlock.map { $0 == (1, 32) } == true)
        #expect(throws: ModelError.self) { try ct(#"{"strategy": "group"}"#) }
        #expect(throws: ModelError.self) { try ct(#"{"strategy": "attn_head"}"#) }
        do {
            _ = try parse(#"{"quantization_config": {"quant_method": "bitsandbytes"}}"#)
            Issue.record("quant_method bitsandbytes was accepted")
        } catch {
            #expect("\(error)".contains("quant_method 'bitsandbytes'") && "\(error)".contains("int8 or int4"), "\(error)")
        }
        // Asymmetric integer weights load (their zero points are read); asymmetric float8 is refused.
        #expect(try parse(#"{"quantization_config": {"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int", "symmetric": false, "strategy": "channel"}}}}}"#) != nil)
        #expect(throws: ModelError.self) {
            try parse(#"{"quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "symmetric": false, "strategy": "channel"}}}}}"#)
        }
    }

    // MARK: broken FP8 checkpoints

    @Test func missingScalesAreNamed() throws {
        let dir = try Fixtures.copy("fp8/qwen3-moe-fp8-ragged-blocks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = "model.layers.1.mlp.experts.3.up_proj.weight"
        try CheckpointErrorTests().editHeader(dir) { h in h[name + "_scalX"] = h.removeValue(forKey: name + "_scale_inv") }
        let e = CheckpointErrorTests().loadError(dir)
        #expect(e?.contains("tensor \(name) is stored as F8_E4M3, which needs scales, but the checkpoint has none") == true, "\(e ?? "no error")")
        #expect(e?.contains("\(name)_scale_inv") == true)
    }

    @Test func blockScalesOfTheWrongShapeSayTheShapeExpected() throws {
        // q_proj is 80 × 48: blocks of 32 × 32 need a 3 × 2 grid; claim 2 × 3 (same bytes).
        let name = "model.layers.0.self_attn.q_proj.weight_scale_inv"
        let e = try CheckpointErrorTests().loadError("fp8/qwen3-moe-fp8-ragged-blocks", claiming: [2, 3], for: name)
        #expect(e == "tensor \(name) has shape [2, 3], expected [3, 2]", "\(e ?? "no error")")
    }

    @Test func aBlockSizeThatDoesNotMatchTheScalesIsCaught() throws {
        let dir = try Fixtures.copy("fp8/deepseek-v3-fp8-blocks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        config["quantization_config"] = ["quant_method": "fp8", "weight_block_size": [128, 128]]
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let e = CheckpointErrorTests().loadError(dir)
        #expect(e?.contains("_scale_inv has shape") == true && e?.contains("expected [1, 1]") == true, "\(e ?? "no error")")
    }

    @Test func otherQuantisationMethodsAreRefusedWithAWayOut() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        config["quantization_config"] = ["quant_method": "bitsandbytes", "load_in_4bit": true]
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let e = CheckpointErrorTests().loadError(dir)
        #expect(e?.hasPrefix("unsupported: quantization_config.quant_method 'bitsandbytes'") == true, "\(e ?? "no error")")
    }
}
