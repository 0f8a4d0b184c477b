import ArgumentParser
import Foundation
import MoECore
import MoEModel

struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Prefill and decode rates of a checkpoint, with the decode roofline ratio (achieved / (bandwidth ÷ bytes per token)).")

    @Option(help: "Checkpoint directory (default: the bundled demo model).") var model: String?
    @Option(help: "Sequences decoded together (aggregate tok/s is reported).") var batch: Int = 1
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.") var promptTokens = 512
    @Option(name: .customLong("decode-steps"), help: "Decode steps to time.") var decodeSteps = 32
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard batch >= 1, promptTokens >= 1, decodeSteps >= 1 else { throw ValidationError("--batch, --prompt-tokens and --decode-steps must be positive") }
    }

    func run() throws {
        guard let dir = model ?? BundledModels.path() else {
            throw ValidationError("no --model given and Models/demo-mixtral not found")
        }
        let t0 = monotonicSeconds()
        let m = try LoadedModel(directory: URL(fileURLWithPath: dir))
        let loadSeconds = monotonicSeconds() - t0
        let spec = m.spec
        log("model \(dir): \(spec.modelType), \(spec.numLayers) layers, \(spec.numExperts) experts, weights \(String(format: "%.2f", Double(m.bytesHeld) / 1e9)) GB f32, loaded in \(String(format: "%.1f", loadSeconds)) s")

        let bandwidth = Roofline.triadBandwidth()
        let gemm = Roofline.gemmFlops()
        let prefill = measurePrefill(m)
        let decode1 = measureDecode(m, batch: 1)
        let decodeN = batch > 1 ? measureDecode(m, batch: batch) : decode1
        let roofline = bandwidth / decode1.bytesPerStep
        let ratio = decode1.tokensPerSecond / roofline

        if json {
            var obj: [String: Any] = [
                "model": dir, "format": "f32", "threads": ComputeThreads.count, "isa": ComputeThreads.isa,
                "prefill_tok_s": prefill.tokensPerSecond, "prefill_gflop_s": prefill.flops / 1e9,
                "gemm_gflop_s": gemm / 1e9, "prefill_gemm_ratio": prefill.flops / gemm,
                "decode_tok_s": decode1.tokensPerSecond, "bytes_per_token": decode1.bytesPerStep,
                "bandwidth_gb_s": bandwidth / 1e9, "roofline_tok_s": roofline, "roofline_ratio": ratio,
            ]
            if batch > 1 { obj["batch"] = batch; obj["batch_decode_tok_s"] = decodeN.tokensPerSecond }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows: [(String, String)] = [
            ("memory bandwidth (triad, \(ComputeThreads.count) threads)", String(format: "%.1f GB/s", bandwidth / 1e9)),
            ("f32 GEMM 1024³ (\(ComputeThreads.count) threads)", String(format: "%.1f GFLOP/s", gemm / 1e9)),
            ("prefill \(promptTokens) tokens", String(format: "%.1f tok/s (%.1f GFLOP/s, %.0f%% of GEMM)", prefill.tokensPerSecond, prefill.flops / 1e9, 100 * prefill.flops / gemm)),
            ("decode, batch 1", String(format: "%.1f tok/s", decode1.tokensPerSecond)),
            ("weights read per decode step", String(format: "%.3f GB (%.2f experts/layer)", decode1.bytesPerStep / 1e9, decode1.expertsPerLayer)),
            ("decode roofline (bandwidth ÷ bytes)", String(format: "%.1f tok/s", roofline)),
            ("decode roofline ratio", String(format: "%.2f", ratio)),
        ]
        if batch > 1 {
            rows.append(("decode, batch \(batch) (aggregate)", String(format: "%.1f tok/s (%.3f GB/step, %.2f experts/layer)", decodeN.tokensPerSecond, decodeN.bytesPerStep / 1e9, decodeN.expertsPerLayer)))
        }
        printTable(title: "moe-bench \(dir) — \(ComputeThreads.count) threads, \(ComputeThreads.isa), f32 compute", rows)
    }

    struct Prefill { var tokensPerSecond: Double; var flops: Double }
    struct Decode { var tokensPerSecond: Double; var bytesPerStep: Double; var expertsPerLayer: Double }

    /// Best of three full forward passes over one `promptTokens`-long prompt.
    func measurePrefill(_ m: LoadedModel) -> Prefill {
        let T = promptTokens, bs = 16, blocks = (T + bs - 1) / bs
        let cache = KVCache(spec: m.spec, blockSize: bs, numBlocks: blocks)
        let input = SequenceInput(tokens: randomTokens(T, vocab: m.spec.vocabSize, seed: 1), start: 0,
                                  blockTable: (0..<Int32(blocks)).map { $0 })
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = monotonicSeconds()
            _ = m.transformer.forward([input], cache: cache)
            best = min(best, monotonicSeconds() - t0)
        }
        return Prefill(tokensPerSecond: Double(T) / best, flops: flopsPerToken(m.spec, context: T / 2) * Double(T) / best)
    }

    /// `batch` sequences with 16-token prompts, then `decodeSteps` greedy steps; aggregate tokens per second and the
    /// weight bytes each step had to read (dense weights + each distinct expert touched + KV cache).
    func measureDecode(_ m: LoadedModel, batch B: Int) -> Decode {
        var h = DecodeHarness(m.transformer, batch: B, steps: decodeSteps)
        var seconds = 0.0, bytes = 0.0, experts = 0.0
        for step in 0..<decodeSteps {
            seconds += h.next()
            let touched = h.output.expertCounts.map { $0.filter { $0 > 0 }.count }
            experts += Double(touched.reduce(0, +)) / Double(max(m.spec.moeLayers.count, 1))
            bytes += stepBytes(m, touched: touched, context: B * (h.prompt + step + 1))
        }
        return Decode(tokensPerSecond: Double(B * decodeSteps) / seconds, bytesPerStep: bytes / Double(decodeSteps),
                      expertsPerLayer: experts / Double(decodeSteps))
    }

    /// Bytes one decode step reads: every dense weight, each touched expert once, one embedding row per sequence
    /// (ignored: tiny) and the K/V of every cached position.
    func stepBytes(_ m: LoadedModel, touched: [Int], context: Int) -> Double {
        let s = m.spec, w = m.transformer.weights
        var b = w.lmHead.byteCount + w.norm.byteCount
        for (l, lw) in w.layers.enumerated() {
            let a = lw.attention
            b += a.q.byteCount + a.k.byteCount + a.v.byteCount + a.o.byteCount + lw.inputNorm.byteCount + lw.postNorm.byteCount
            switch lw.ffn {
            case .dense(let mlp): b += mlp.byteCount
            case .moe(let r):
                b += r.gate.byteCount + (r.shared?.byteCount ?? 0)
                b += touched[l] * 3 * s.hiddenSize * s.layers[l].moe!.intermediate * 4
            }
        }
        b += context * 2 * s.numLayers * s.kvDim * 4
        return Double(b)
    }

    /// Multiply-adds ×2 per token: dense matrices, top-k experts, attention over `context` positions.
    func flopsPerToken(_ s: ModelSpec, context: Int) -> Double {
        let H = s.hiddenSize
        var f = 2 * s.vocabSize * H
        for l in 0..<s.numLayers {
            f += 2 * H * (2 * s.qDim + 2 * s.kvDim) + 4 * context * s.qDim
            switch s.layers[l] {
            case .dense(let i, _, _): f += 6 * H * i
            case .moe(let m): f += 2 * H * m.experts + m.topK * 6 * H * m.intermediate + (m.shared.map { 6 * H * $0.intermediate } ?? 0)
            }
        }
        return Double(f)
    }
}

func log(_ s: String) { logLine(s) }

/// A two-column table in Markdown, so it pastes into the README as is.
func printTable(title: String, _ rows: [(String, String)]) {
    print(title)
    let w = max(rows.map(\.0.count).max() ?? 0, 7)
    print("| " + "measure".padding(toLength: w, withPad: " ", startingAt: 0) + " | value |")
    print("| " + String(repeating: "-", count: w) + " | ----- |")
    for (k, v) in rows { print("| " + k.padding(toLength: w, withPad: " ", startingAt: 0) + " | \(v) |") }
}

