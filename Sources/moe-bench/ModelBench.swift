import ArgumentParser
import Foundation
import MoECluster
import MoECore
import MoEModel

struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Prefill and decode rates of a checkpoint per weight format, beside the decode roofline (read bandwidth ÷ bytes per token) and the f32 GEMM rate.")

    @Option(help: "Checkpoint directory (default: the bundled demo model).") var model: String?
    @Option(help: "Weight format of experts and every dense product: f32, f16, bf16, int8, int4, int4z, mxfp4, a comma-separated list, or all.")
    var format = "all"
    @Option(help: "Sequences decoded together (aggregate tok/s is reported).") var batch: Int = 1
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.") var promptTokens = 512
    @Option(name: .customLong("decode-steps"), help: "Decode steps to time.") var decodeSteps = 32
    @Flag(help: "Print one JSON object per format (one line each).") var json = false
    @Flag(help: "After the decode rounds, profile one more by product shape (time share, GB/s and its ratio to the read bandwidth of each matrix product) and split the time outside products by part of the step.")
    var products = false

    var formats: [WeightFormat] {
        get throws {
            if format == "all" { return WeightFormat.allCases }
            return try format.split(separator: ",").map {
                guard let f = WeightFormat(name: String($0)) else { throw ValidationError("--format: '\($0)' is not one of \(WeightFormat.names) or all") }
                return f
            }
        }
    }

    func validate() throws {
        guard batch >= 1, promptTokens >= 1, decodeSteps >= 1 else { throw ValidationError("--batch, --prompt-tokens and --decode-steps must be positive") }
        _ = try formats
    }

    struct Row {
        var format: WeightFormat
        var weightBytes: Int
        /// Resident bytes of the process right after loading this format.
        var residentBytes: Int
        var prefill: Prefill
        var decode: Decode
        var batchDecode: Decode?
        /// The read bandwidth around the reported decode round: the better of the samples just before and just after it.
        var bandwidth: Double
        /// Whether the two samples agreed (Roofline.SampledRound.isSteady); if not, the ratio is uncertain.
        var steady: Bool
        /// A cache line's round trip between the two compute threads just after the reported round (ns; nil with one
        /// thread): on a VM, whether the vCPUs shared a core complex then.
        var roundTrip: Double?
        /// Decode rounds run (3, or up to 6 while none was steady).
        var rounds: Int
        /// The format's one-input-row products from cache (Roofline.InCacheProducts), bytes/s: the better of a
        /// sample before the decode rounds and one after.
        var inCache: Double
        var roofline: Double { bandwidth / decode.bytesPerStep }
    }

    func run() throws {
        guard let dir = model ?? BundledModels.path() else {
            throw ValidationError("no --model given and Models/demo-mixtral not found")
        }
        ComputeThreads.ensureConfigured()
        // The bandwidth this machine gives varies from minute to minute, sometimes within seconds (it is shared,
        // 30–70 GB/s): bandwidth is sampled before the first decode round and after each, and the fastest steady
        // round (its two samples within 15%) is compared with the better of the two samples around it, so the ratio
        // compares a decode with the limit of the same moment and a slow moment never flatters it. Rounds go on, up
        // to six, until one of at least three is steady; if none is, the ratio is marked uncertain.
        let bandwidth = Roofline.readBandwidth()
        let triad = Roofline.triadBandwidth()
        let gemm = Roofline.gemmFlops()
        log("read bandwidth \(String(format: "%.1f", bandwidth / 1e9)) GB/s, triad \(String(format: "%.1f", triad / 1e9)) GB/s, f32 GEMM \(String(format: "%.0f", gemm / 1e9)) GFLOP/s (\(ComputeThreads.count) threads, \(ComputeThreads.isa))")
        var rows: [Row] = []
        var profiles: [(WeightFormat, ProductsProfile)] = []
        for f in try formats {
            let t0 = monotonicSeconds()
            let m = try LoadedModel(directory: URL(fileURLWithPath: dir), formats: WeightFormats(experts: f, dense: f))
            let spec = m.spec
            // Resident memory once loaded (the previous format's model is gone): weights plus what loading kept.
            let resident = residentBytes()
            log("\(f): \(spec.modelType), \(spec.numLayers) layers, \(spec.numExperts) experts, weights \(String(format: "%.2f", Double(m.bytesHeld) / 1e9)) GB, loaded in \(String(format: "%.1f", monotonicSeconds() - t0)) s, resident \(String(format: "%.2f", Double(resident) / 1e9)) GB")
            let prefill = measurePrefill(m)
            let probe = Roofline.InCacheProducts(format: f), cacheBefore = probe.rate()
            var decodes: [Decode] = [], sampled: [Roofline.SampledRound] = [], trips: [Double?] = []
            var before = Roofline.readBandwidth()
            while decodes.count < 3 || (decodes.count < 6 && !sampled.contains { $0.isSteady() }) {
                let d = measureDecode(m, format: f, batch: 1), after = Roofline.readBandwidth()
                trips.append(Roofline.threadRoundTrip())
                decodes.append(d)
                sampled.append(.init(rate: d.tokensPerSecond, before: before, after: after))
                before = after
            }
            let (best, steady) = Roofline.reportedRound(sampled)!
            let decode = decodes[best]
            let batched = batch > 1 ? measureDecode(m, format: f, batch: batch) : nil
            let inCache = max(cacheBefore, probe.rate())
            let row = Row(format: f, weightBytes: m.bytesHeld, residentBytes: resident, prefill: prefill, decode: decode,
                          batchDecode: batched, bandwidth: sampled[best].bandwidth, steady: steady, roundTrip: trips[best],
                          rounds: decodes.count, inCache: inCache)
            rows.append(row)
            let profile = products ? profileDecode(m, format: f) : nil
            if let p = profile, !json { profiles.append((f, p)) }
            if json {
                let roofline = row.roofline
                var obj: [String: Any] = [
                    "model": dir, "format": f.rawValue, "threads": ComputeThreads.count, "isa": ComputeThreads.isa,
                    "weight_bytes": m.bytesHeld, "resident_bytes_after_load": resident,
                    "prefill_tokens": promptTokens, "prefill_tok_s": prefill.tokensPerSecond, "prefill_gflop_s": prefill.flops / 1e9,
                    "gemm_gflop_s": gemm / 1e9, "prefill_gemm_ratio": prefill.flops / gemm,
                    "decode_tok_s": decode.tokensPerSecond, "bytes_per_token": decode.bytesPerStep,
                    "bandwidth_gb_s": row.bandwidth / 1e9, "triad_gb_s": triad / 1e9,
                    "roofline_tok_s": roofline, "roofline_ratio": decode.tokensPerSecond / roofline,
                    "bandwidth_steady": row.steady, "decode_rounds": row.rounds,
                    "in_cache_product_gb_s": row.inCache / 1e9,
                ]
                if let ns = row.roundTrip { obj["thread_round_trip_ns"] = ns }
                if let b = batched { obj["batch"] = batch; obj["batch_decode_tok_s"] = b.tokensPerSecond }
                if let p = profile {
                    obj["products"] = p.jsonRows
                    if let parts = p.outsideByPart { obj["outside_products_us_per_token"] = Dictionary(uniqueKeysWithValues: parts.map { ($0.key, $0.us) }) }
                }
                let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                FileHandle.standardOutput.synchronizeFile()
            }
        }
        if json { return }
        print("moe-bench \(dir) — \(ComputeThreads.count) threads, \(ComputeThreads.isa); read bandwidth at start \(String(format: "%.1f", bandwidth / 1e9)) GB/s (triad \(String(format: "%.1f", triad / 1e9))), f32 GEMM \(String(format: "%.0f", gemm / 1e9)) GFLOP/s")
        var header = "| format | weights (GB) | resident (GB) | prefill \(promptTokens) (tok/s) | prefill GFLOP/s (÷ f32 GEMM) | decode (tok/s) | bytes/token (GB) | bandwidth (GB/s) | roofline (tok/s) | ratio | products from cache (GB/s) |"
        if batch > 1 { header += " decode batch \(batch) (tok/s) |" }
        print(header)
        print(String(repeating: "| --- ", count: batch > 1 ? 12 : 11) + "|")
        for r in rows {
            let roofline = r.roofline
            var line = String(format: "| %@ | %.2f | %.2f | %.0f | %.0f (%.2f) | %.1f | %.3f | %.1f | %.1f | **%.2f** | %.0f |", r.format.rawValue,
                              Double(r.weightBytes) / 1e9, Double(r.residentBytes) / 1e9, r.prefill.tokensPerSecond, r.prefill.flops / 1e9, r.prefill.flops / gemm,
                              r.decode.tokensPerSecond, r.decode.bytesPerStep / 1e9, r.bandwidth / 1e9, roofline,
                              r.decode.tokensPerSecond / roofline, r.inCache / 1e9)
            if !r.steady { line = line.replacingOccurrences(of: "** |", with: "** (uncertain) |") }
            if let b = r.batchDecode { line += String(format: " %.1f |", b.tokensPerSecond) }
            print(line)
        }
        print("(products from cache: the format's one-input-row products on a 2048 × 1024 matrix held in cache, the better of a sample before and after the decode rounds: decode streams no faster, so near the bandwidth the products' own work bounds decode: arithmetic, and both threads' fork, join and hand-overs)")
        let trips = rows.compactMap { r in r.roundTrip.map { "\(r.format.rawValue) \(Int($0.rounded())) ns" } }
        if !trips.isEmpty {
            print("(a cache line's round trip between the two threads just after each reported round: \(trips.joined(separator: ", ")); on a VM, tens of ns when the vCPUs share a core complex, hundreds when they do not)")
        }
        if rows.contains(where: { !$0.steady }) {
            print("(uncertain: in every decode round of that format, six, the bandwidth samples before and after it differed by more than 15%)")
        }
        for (f, p) in profiles { p.print(format: f) }
    }

    /// One decode round of batch 1 with every product timed, between two bandwidth samples.
    struct ProductsProfile {
        var stats: [(label: String, stat: ProductStat)]
        var tokens: Int
        var seconds: Double
        var bandwidth: Double
        /// The forward passes' own split of the round's time (products included), to place the time outside them.
        var phases: StepProfile

        /// Time outside products per token (µs), by the part of a step it falls in: the part's time less its
        /// products' (attention: q|k|v and o; routing: the router; experts: theirs; head: lm_head), then what no
        /// part holds (embeddings, the steps' own work). nil when a product's shape is shared by kinds of two parts.
        var outsideByPart: [(key: String, label: String, us: Double)]? {
            var inside: [String: Double] = [:]
            func part(_ kind: Substring) -> String? {
                kind.hasPrefix("attention") ? "attention" : kind == "router" ? "routing" : kind.hasPrefix("expert") ? "experts"
                    : kind == "lm_head" ? "head" : nil
            }
            for (l, st) in stats {
                let parts = Set(l.split(separator: " or ", omittingEmptySubsequences: false).map(part))
                guard parts.count == 1, let p = parts.first! else { return nil }     // "other" has no part
                inside[p, default: 0] += st.seconds
            }
            let perToken = 1e6 / Double(tokens)
            func outside(_ part: String, _ t: Double) -> Double { max(0, t - (inside[part] ?? 0)) * perToken }
            return [("attention", "attention: norm, rope, KV store, attention over the cache, residual", outside("attention", phases.attention)),
                    ("routing", "routing: norm, top-k", outside("routing", phases.routing)),
                    ("experts", "experts: gather, activation, weighted sum", outside("experts", phases.experts)),
                    ("dense", "dense MLP layers", phases.dense * perToken),
                    ("head", "lm_head: final norm", outside("head", phases.head)),
                    ("rest", "the rest: embeddings, step set-up", max(0, seconds - phases.total) * perToken)]
        }

        /// Per token and per call, the share of the round's decode time, GB/s and ÷ the read bandwidth.
        func figures(_ s: ProductStat) -> (perToken: Double, mbPerCall: Double, usPerCall: Double, share: Double, gbs: Double, ratio: Double) {
            let calls = Double(max(s.calls, 1))
            return (Double(s.calls) / Double(tokens), s.weightBytes / calls / 1e6, s.seconds / calls * 1e6, s.seconds / seconds,
                    s.bandwidth / 1e9, s.bandwidth / bandwidth)
        }

        var jsonRows: [[String: Any]] {
            stats.map { l, s in
                let f = figures(s)
                return ["product": l, "rows": s.rows, "cols": s.cols, "input_rows": s.inputRows, "calls_per_token": f.perToken,
                        "share": f.share, "gb_s": f.gbs, "bandwidth_ratio": f.ratio] as [String: Any]
            }
        }

        func print(format f: WeightFormat) {
            Swift.print("\n\(f.rawValue) decode by product (batch 1, \(tokens) tokens, read bandwidth \(String(format: "%.1f", bandwidth / 1e9)) GB/s around the round)")
            Swift.print("| product | rows × cols | calls/token | MB/call | µs/call | share of decode time | GB/s | ÷ read bandwidth |")
            Swift.print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            var inside = 0.0
            for (l, s) in stats {
                inside += s.seconds
                let f = figures(s)
                Swift.print(String(format: "| %@ | %d × %d | %.1f | %.2f | %.0f | %.3f | %.1f | %.2f |", l, s.rows, s.cols,
                                   f.perToken, f.mbPerCall, f.usPerCall, f.share, f.gbs, f.ratio))
            }
            Swift.print(String(format: "| outside products (attention, norms, routing, sampling) | | | | | %.3f | | |", 1 - inside / seconds))
            guard let parts = outsideByPart else { return }
            Swift.print("\n\(f.rawValue) decode outside products, by part of the step")
            Swift.print("| part | µs/token | share of decode time |")
            Swift.print("| --- | --- | --- |")
            for (_, label, us) in parts where us > 0 {
                Swift.print(String(format: "| %@ | %.1f | %.3f |", label, us, us * 1e-6 * Double(tokens) / seconds))
            }
        }
    }

    func profileDecode(_ m: LoadedModel, format: WeightFormat) -> ProductsProfile {
        let before = Roofline.readBandwidth()
        var h = DecodeHarness(m.transformer, batch: 1, steps: decodeSteps)   // its prompt's prefill is not profiled
        ProductProfile.start()
        var seconds = 0.0
        let p0 = m.transformer.profile
        for _ in 0..<decodeSteps { seconds += h.next() }
        let p1 = m.transformer.profile
        let stats = ProductProfile.stop()
        let after = Roofline.readBandwidth()
        let s = m.spec, H = s.hiddenSize
        // Products are told apart by shape only: a shape that two kinds of product share (small models) is labelled
        // with both. q, k and v run as one product where they were stacked at load, gate and up likewise.
        let layer = m.transformer.weights.layers.first
        var kinds: [(name: String, rows: Int, cols: Int)] = [("lm_head", s.vocabSize, H)]
        switch layer?.block {
        case .latent(let a)?:
            let first = a.q ?? a.qA!, name = a.q != nil ? "q" : "q_a"
            kinds += a.inProj != nil ? [("attention \(name)|kv_a", a.inProj!.rows, H)]
                : [("attention \(name)", first.rows, H), ("attention kv_a", a.kvA.rows, H)]
            if let qB = a.qB { kinds.append(("attention q_b", qB.rows, qB.cols)) }
            kinds += [("attention o", H, a.o.cols), ("latent query (W_UK, per head)", a.uk[0].rows, a.uk[0].cols),
                      ("latent value (W_UV, per head)", a.uv[0].rows, a.uv[0].cols)]
        default:
            kinds += [("attention o", H, s.qDim)]
            kinds += layer?.attention?.qkv != nil ? [("attention q|k|v", s.qDim + 2 * s.kvDim, H)]
                : [("attention q", s.qDim, H), ("attention k, v", s.kvDim, H)]
        }
        func mlp(_ name: String, _ w: MLPWeights) -> [(name: String, rows: Int, cols: Int)] {
            let I = w.down.cols
            return (w.gateUp != nil ? [("\(name) gate|up", 2 * I, H)] : [("\(name) gate, up", I, H)]) + [("\(name) down", H, I)]
        }
        for lw in m.transformer.weights.layers {
            switch lw.ffn {
            case .dense(let w): kinds += mlp("dense", w)
            case .moe(let r): if let w = r.shared { kinds += mlp("shared", w) }
            }
        }
        if let l = s.moeLayers.first, let e = s.layers[l].moe {
            let store = (m.transformer.experts as? LocalExperts)?.store
            let fused = (0..<e.experts).lazy.compactMap { store?.weights(layer: l, expert: $0) }.first?.gateUp != nil
            kinds += fused ? [("expert gate|up", 2 * e.intermediate, H)] : [("expert gate, up", e.intermediate, H)]
            kinds += [("expert down", H, e.intermediate), ("router", e.experts, H)]
        }
        func label(_ p: ProductStat) -> String {
            var names: [String] = []
            for k in kinds where k.rows == p.rows && k.cols == p.cols && !names.contains(k.name) { names.append(k.name) }
            return names.isEmpty ? "other" : names.joined(separator: " or ")
        }
        return ProductsProfile(stats: stats.map { (label($0), $0) }.sorted { $0.stat.seconds > $1.stat.seconds },
                               tokens: decodeSteps, seconds: seconds, bandwidth: max(before, after), phases: p1 - p0)
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
    func measureDecode(_ m: LoadedModel, format: WeightFormat, batch B: Int) -> Decode {
        var h = DecodeHarness(m.transformer, batch: B, steps: decodeSteps)
        var seconds = 0.0, bytes = 0.0, experts = 0.0
        for step in 0..<decodeSteps {
            seconds += h.next()
            let touched = h.output.expertCounts.map { $0.filter { $0 > 0 }.count }
            experts += Double(touched.reduce(0, +)) / Double(max(m.spec.moeLayers.count, 1))
            bytes += stepBytes(m, format: format, touched: touched, context: B * (h.prompt + step + 1))
        }
        return Decode(tokensPerSecond: Double(B * decodeSteps) / seconds, bytesPerStep: bytes / Double(decodeSteps),
                      expertsPerLayer: experts / Double(decodeSteps))
    }

    /// Bytes one decode step reads: every dense weight, each touched expert once, one embedding row per sequence
    /// (ignored: tiny) and the K/V of every cached position.
    func stepBytes(_ m: LoadedModel, format: WeightFormat, touched: [Int], context: Int) -> Double {
        let s = m.spec, w = m.transformer.weights
        var b = w.lmHead.byteCount + w.norm.byteCount
        for (l, lw) in w.layers.enumerated() {
            b += lw.block.products.reduce(0) { $0 + $1.byteCount } + lw.inputNorm.byteCount + lw.postNorm.byteCount
            switch lw.ffn {
            case .dense(let mlp): b += mlp.byteCount
            case .moe(let r):
                b += r.gate.byteCount + (r.shared?.byteCount ?? 0)
                let I = s.layers[l].moe!.intermediate, H = s.hiddenSize
                b += touched[l] * (2 * I * format.rowBytes(H) + H * format.rowBytes(I))
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
            f += 2 * s.attentionParams + 4 * context * s.qDim
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

