import Foundation
import MoECore
import MoETestSupport
import Testing
@testable import MoEModel

/// Deliberately broken copies of a fixture: each fault gives one clear error naming what is wrong.
@Suite struct CheckpointErrorTests {
    func loadError(_ dir: URL) -> String? {
        do { _ = try LoadedModel(directory: dir); return nil } catch { return "\(error)" }
    }

    /// Rewrites the safetensors header of `dir/model.safetensors` with `edit`, keeping the data.
    func editHeader(_ dir: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        edit(&header)
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count < n { json.append(0x20) }
        try #require(json.count == n, "edited header must keep its length")
        try (data.prefix(8) + json + data.suffix(from: 8 + n)).write(to: url)
    }

    /// The load error of a copy of `fixture` whose header gives `tensor` the shape `claimed` (same bytes).
    func loadError(_ fixture: String, claiming claimed: [Int], for tensor: String) throws -> String? {
        let dir = try Fixtures.copy(fixture)
        defer { try? FileManager.default.removeItem(at: dir) }
        try editHeader(dir) { h in
            var e = h[tensor] as! [String: Any]
            e["shape"] = claimed
            h[tensor] = e
        }
        return loadError(dir)
    }

    @Test func missingTensorIsNamed() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        try editHeader(dir) { h in
            h["model.layers.1.self_attn.q_proj.weighX"] = h.removeValue(forKey: "model.layers.1.self_attn.q_proj.weight")
        }
        let e = loadError(dir)
        #expect(e?.contains("missing tensor model.layers.1.self_attn.q_proj.weight") == true, "\(e ?? "no error")")
    }

    @Test func wrongShapeSaysExpectedAndFound() throws {
        let e = try loadError("tiny-mixtral", claiming: [64, 32], for: "model.layers.0.self_attn.k_proj.weight")
        #expect(e == "tensor model.layers.0.self_attn.k_proj.weight has shape [64, 32], expected [32, 64]", "\(e ?? "no error")")
    }

    @Test func truncatedFileIsReported() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 1000).write(to: url)
        let e = loadError(dir)
        #expect(e?.hasPrefix("truncated safetensors file model.safetensors") == true, "\(e ?? "no error")")
    }

    @Test func garbageHeaderIsReported() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        var data = try Data(contentsOf: url)
        data.replaceSubrange(8..<16, with: Array("NOTJSON!".utf8))
        try data.write(to: url)
        #expect(loadError(dir) == "bad safetensors header in model.safetensors: header is not a JSON object")
        try Data([1, 2, 3]).write(to: url)
        #expect(loadError(dir)?.contains("shorter than the 8-byte header length") == true)
        var huge = Data(count: 16)
        huge[0] = 0xff; huge[6] = 0x7f
        try huge.write(to: url)
        #expect(loadError(dir)?.contains("does not fit in a file of 16 bytes") == true)
    }

    @Test func unknownModelTypeListsSupportedOnes() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"mixtral\"", with: "\"jamba\"")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let e = loadError(dir)
        #expect(e?.hasPrefix("unknown model_type 'jamba' in config.json (supported: mixtral") == true, "\(e ?? "no error")")
    }

    @Test func unsupportedDTypeIsNamed() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        try editHeader(dir) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            e["dtype"] = "I32"
            h["model.norm.weight"] = e
        }
        #expect(loadError(dir) == "tensor model.norm.weight has dtype I32, which is not supported (F32, F16, BF16; F8_E4M3, F8_E5M2 and I8 with scales; MXFP4 as U8 blocks and scales)")
    }

    @Test func missingDirectoryAndConfigAreReported() throws {
        #expect(loadError(URL(fileURLWithPath: "/nonexistent/model"))?.contains("expected a checkpoint directory") == true)
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        #expect(loadError(dir)?.hasPrefix("missing file:") == true)
    }

    @Test func badConfigValueIsReportedBeforeWeights() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("config.json")
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        obj["num_experts_per_tok"] = 9
        try JSONSerialization.data(withJSONObject: obj).write(to: url)
        #expect(loadError(dir)?.contains("num_experts_per_tok (9) must be between 1 and the number of experts (8)") == true)
        obj["num_experts_per_tok"] = "two"
        try JSONSerialization.data(withJSONObject: obj).write(to: url)
        #expect(loadError(dir)?.contains("num_experts_per_tok' has the wrong type") == true)
    }
}

@Suite struct CheckpointLoadingTests {
    @Test func f32WeightsAreUsedInPlaceFromTheMapping() throws {
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral"))
        #expect(m.transformer.weights.embed.owner is MappedFile)
        #expect(m.transformer.weights.layers[0].attention?.q.owner is MappedFile)
        let store = try ExpertStore(m.checkpoint, m.spec)
        #expect(store.weights(layer: 1, expert: 7)!.down.owner is MappedFile)
    }

    /// Resident kB of the mapping that starts at `base`, from /proc/self/smaps (this mapping only, whatever else
    /// the test process holds).
    func residentKB(ofMappingAt base: UnsafeRawPointer) throws -> Int {
        // /proc files report size 0: read to the end rather than by size.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps"))
        defer { try? handle.close() }
        let smaps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        let start = String(UInt(bitPattern: base), radix: 16)
        var inside = false
        for line in smaps.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), !line.hasPrefix(" "), line[..<dash].allSatisfy(\.isHexDigit) {
                inside = line[..<dash].drop { $0 == "0" } == start.drop { $0 == "0" }
            } else if inside, line.hasPrefix("Rss:") {
                return Int(line.split(separator: " ")[1])!
            }
        }
        throw CocoaError(.fileReadUnknown)
    }

    /// Once a tensor is converted into owned storage its pages of the mapping are released: the mapping's resident
    /// size falls by the whole pages inside the range (a page shared with a neighbour stays), and reading the range
    /// again gives the file's bytes.
    @Test func releasedMappingPagesLeaveMemoryAndReadBackTheSame() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (0..<(8 * page)).map { UInt8(truncatingIfNeeded: $0 * 31 + $0 / 7) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("release-\(UUID().uuidString).bin")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try MappedFile(url: url)
        var sum = 0
        for i in stride(from: 0, to: file.size, by: 64) { sum &+= Int(file.base.load(fromByteOffset: i, as: UInt8.self)) }
        #expect(sum != 0)
        #expect(try residentKB(ofMappingAt: file.base) == 8 * page / 1024)
        // Bytes [100, 100 + 3 pages + 50): pages 1 and 2 lie wholly inside it.
        file.release(from: file.base + 100, count: 3 * page + 50)
        #expect(try residentKB(ofMappingAt: file.base) == 6 * page / 1024)
        file.release(from: file.base + 10 * page, count: page)     // outside the mapping: ignored
        #expect((0..<file.size).allSatisfy { file.base.load(fromByteOffset: $0, as: UInt8.self) == bytes[$0] })
    }

    /// Loading a bf16 checkpoint releases each tensor's pages of the mapping once converted: what stays resident of
    /// the file is the pages tensors share at their boundaries, not the file (a synthesized model whose tensors
    /// span many pages: 64–128 KB each, 2.3 MB in all).
    @Test func aConvertedCheckpointDoesNotStayResident() throws {
        var o = SynthOptions()
        (o.hidden, o.intermediate, o.layers, o.experts, o.heads, o.kvHeads, o.vocab) = (128, 256, 2, 4, 4, 2, 512)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resident-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Synthesizer.write(o, to: dir)
        let m = try LoadedModel(directory: dir)
        let file = m.checkpoint.files[0]
        let resident = try residentKB(ofMappingAt: file.mapping.base) * 1024
        #expect(resident < file.mapping.size / 8, "\(resident) of \(file.mapping.size) bytes resident")
    }

    /// `synth --family deepseek_v2` writes what this project loads as DeepSeek-V2 (latent attention, shared experts,
    /// a leading dense layer), with as many parameters as it reports, and generates from it. (transformers 5.24
    /// loads such a checkpoint to the same logits within 5e-6: checked when the family was added.)
    @Test func aSynthesizedDeepSeekLoadsAndGenerates() throws {
        var o = SynthOptions()
        o.family = "deepseek_v2"
        (o.hidden, o.intermediate, o.layers, o.experts, o.topK, o.heads, o.vocab) = (64, 32, 3, 8, 2, 4, 512)
        (o.kvLoraRank, o.nopeDim, o.ropeDim, o.vDim, o.sharedExperts, o.denseLayers, o.denseIntermediate) = (32, 16, 8, 16, 2, 1, 96)
        let dir = Fixtures.tempDir("synth-deepseek")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Synthesizer.write(o, to: dir)
        let m = try LoadedModel(directory: dir)
        #expect(m.spec.modelType == "deepseek_v2" && m.spec.mla?.kvLoraRank == 32 && m.spec.layers[0].moe == nil)
        #expect(m.spec.layers[1].moe?.shared?.intermediate == 64)
        let held = m.checkpoint.tensorNames.reduce(0) { $0 + m.checkpoint.entry($1)!.shape.reduce(1, *) }
        #expect(held == o.parameterCount)
        let r = try GoldenTests.greedy(m, [5, 6, 7], 6)
        #expect(r.tokens.count == 6)
    }

    @Test func bf16WeightsAreConvertedOnceAtLoad() throws {
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral-bf16"))
        #expect(m.transformer.weights.embed.owner is FloatBuffer)
    }

    @Test func fusedExpertLayoutIsDetectedAndSliced() throws {
        let fused = try Checkpoint(directory: Fixtures.model("tiny-mixtral-fused"))
        let plain = try Checkpoint(directory: Fixtures.model("tiny-mixtral"))
        let spec = try ModelFamilies.spec(configData: fused.configData)
        #expect(try resolveExpertLayout(fused, spec, layer: 0) == .fused(prefix: "mlp"))
        #expect(try resolveExpertLayout(plain, spec, layer: 0) == .perExpert(prefix: "block_sparse_moe", names: MLPNames(gate: "w1", up: "w3", down: "w2")))
        let a = try ExpertStore(fused, spec) { l, e in l == 1 && e == 5 }
        let b = try ExpertStore(plain, spec) { l, e in l == 1 && e == 5 }
        #expect(a.count == 1 && b.count == 1)
        let wa = a.weights(layer: 1, expert: 5)!, wb = b.weights(layer: 1, expert: 5)!
        for (x, y) in [(wa.gate, wb.gate), (wa.up, wb.up), (wa.down, wb.down)] {
            #expect(x.rows == y.rows && x.cols == y.cols)
            #expect((0..<(x.rows * x.cols)).allSatisfy { x.base[$0] == y.base[$0] })
        }
    }

    @Test func shardedCheckpointFindsTensorsInEveryShard() throws {
        let c = try Checkpoint(directory: Fixtures.model("tiny-mixtral-sharded"))
        #expect(c.files.count == 2)
        #expect(c.has("model.embed_tokens.weight") && c.has("lm_head.weight") && c.has("model.norm.weight"))
    }

    @Test func aWorkerSelectionLoadsOnlyThoseExperts() throws {
        let c = try Checkpoint(directory: Fixtures.model("tiny-mixtral"))
        let spec = try ModelFamilies.spec(configData: c.configData)
        let store = try ExpertStore(c, spec) { _, e in e % 3 == 0 }
        #expect(store.count == 2 * 3)
        #expect(store.byteCount == 6 * 3 * 128 * 64 * 4)
        #expect(c.bytesHeld == store.byteCount)
    }

    @Test func fingerprintDiffersBetweenModelsAndMatchesBetweenLayouts() throws {
        let a = try Checkpoint(directory: Fixtures.model("tiny-mixtral")).fingerprint
        let b = try Checkpoint(directory: Fixtures.model("tiny-mixtral")).fingerprint
        let c = try Checkpoint(directory: Fixtures.model("tiny-qwen3-moe")).fingerprint
        #expect(a == b && a != c)
    }
}
