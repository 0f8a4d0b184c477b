import Foundation

/// `moectl stats`: the per-worker table, a layers × experts heat map of routed tokens, and the speculative,
/// throughput and latency summaries, from the server's /v1/stats JSON.
public enum StatsFormatting {
    static let shades: [Character] = [" ", "·", "░", "▒", "▓", "█"]

    public static func render(_ s: [String: Any], color: Bool) -> String {
        func num(_ x: Any?) -> Double { (x as? Double) ?? (x as? Int).map(Double.init) ?? 0 }
        func f(_ x: Double, _ d: Int = 2) -> String { String(format: "%.\(d)f", x) }
        var out = ""
        let tp = s["throughput"] as? [String: Any] ?? [:]
        out += "\(s["model"] as? String ?? "model") · \(Int(num(s["steps"]))) steps (window \(Int(num(s["window_steps_recorded"])))/\(Int(num(s["window_steps"])))) · \(Int(num(tp["generated_tokens"]))) tokens generated · \(f(num(tp["window_tokens_per_second"]), 1)) tok/s · running \(Int(num(tp["running"]))), waiting \(Int(num(tp["waiting"])))\n\n"

        let workers = s["workers"] as? [[String: Any]] ?? []
        var table: [[String]] = []
        for w in workers {
            let id = Int(num(w["worker"]))
            table.append([id == 0 ? "local" : "\(id)", "\(Int(num(w["tokens"])))", "\(Int(num(w["window_tokens"])))",
                          f(num(w["share"]) * 100, 1) + "%", f(num(w["busy_seconds"]), 3), (num(w["imbalance"]) >= 0 ? "+" : "") + f(num(w["imbalance"]) * 100, 1) + "%"])
        }
        out += TextTable.render(header: ["WORKER", "TOKENS", "WINDOW", "SHARE", "BUSY S", "IMBALANCE"], rows: table) + "\n"
        out += "balancedness \(f(num(s["balancedness"]))) · imbalance ratio \(f(num(s["imbalance_ratio"]))) · Jain \(f(num(s["jain_fairness"]))) · waiting for the slowest worker \(f(num(s["wasted_share"]) * 100, 1))% of expert time\n\n"

        let heat = (s["window_expert_tokens"] as? [[Int]]).flatMap { w in w.joined().reduce(0, +) > 0 ? w : nil } ?? (s["expert_tokens"] as? [[Int]] ?? [])
        let moeRows = heat.enumerated().filter { !$0.element.isEmpty }
        if !moeRows.isEmpty {
            let E = moeRows.map(\.element.count).max() ?? 0
            out += "expert load (tokens per layer × expert; shade = share of the layer's busiest expert)\n"
            out += "layer " + (0..<E).map { String(format: "%3d", $0) }.joined() + "\n"
            for (l, row) in moeRows {
                let m = max(row.max() ?? 0, 1)
                out += String(format: "%5d ", l)
                for x in row {
                    let level = x == 0 ? 0 : 1 + min(4, Int(Double(x) / Double(m) * 4.999))
                    let cell = String(repeating: shades[level], count: 2)
                    out += " " + (color ? colored(cell, level) : cell)
                }
                out += "\n"
            }
            out += "\n"
        }
        let d = s["distinct_experts_per_layer"] as? [String: Any] ?? [:]
        out += "distinct experts per layer per step: decode \(f(num(d["decode"]))), verification \(f(num(d["verification"])))"
        out += " · capacity overflow \(Int(num(s["capacity_overflow"])))\n"
        let a = s["all_to_all"] as? [String: Any] ?? [:]
        out += "all-to-all: \(f(num(a["bytes_sent"]) / 1e6, 1)) MB sent, \(f(num(a["bytes_received"]) / 1e6, 1)) MB received, \(f(num(a["seconds"]), 3)) s\n"
        let sp = s["speculative"] as? [String: Any] ?? [:]
        if num(sp["drafts"]) > 0 {
            out += "speculative: drafts \(Int(num(sp["drafts"]))), draft tokens \(Int(num(sp["draft_tokens"]))), accepted \(Int(num(sp["accepted_tokens"]))), acceptance rate \(f(num(sp["acceptance_rate"]), 3)), mean acceptance length \(f(num(sp["mean_acceptance_length"])))\n"
        }
        let lat = s["latency"] as? [String: Any] ?? [:]
        out += "latency: time to first token p50/p90/p99 \(f(num(lat["ttft_p50"]), 3))/\(f(num(lat["ttft_p90"]), 3))/\(f(num(lat["ttft_p99"]), 3)) s · inter-token \(f(num(lat["itl_p50"]) * 1000, 1))/\(f(num(lat["itl_p90"]) * 1000, 1))/\(f(num(lat["itl_p99"]) * 1000, 1)) ms\n"
        return out
    }

    /// ANSI 256-colour: cool to hot.
    static func colored(_ s: String, _ level: Int) -> String {
        let palette = [240, 24, 31, 178, 208, 196]
        return "\u{1B}[38;5;\(palette[level])m\(s)\u{1B}[0m"
    }

    /// The rebalance report in a few lines.
    public static func rebalance(_ r: [String: Any]) -> String {
        func num(_ x: Any?) -> Double { (x as? Double) ?? (x as? Int).map(Double.init) ?? 0 }
        let b = r["before"] as? [String: Any] ?? [:], a = r["after"] as? [String: Any] ?? [:]
        func line(_ name: String, _ x: [String: Any]) -> String {
            let tokens = (x["worker_tokens"] as? [Double] ?? []).map { String(format: "%.0f", $0) }.joined(separator: " / ")
            return "\(name): imbalance ratio \(String(format: "%.3f", num(x["imbalance_ratio"]))), balancedness \(String(format: "%.3f", num(x["balancedness"]))), tokens per worker \(tokens)"
        }
        let applied = r["applied"] as? Bool ?? false
        return [line("before", b), line("after ", a),
                applied ? "applied: experts moved online (\(Int(num(r["redundant_experts"]))) redundant slots per layer)"
                        : "dry run: nothing moved"].joined(separator: "\n")
    }
}
