import Foundation

/// The statistics snapshot in the Prometheus text exposition format: `moe_` names, labels for layer, expert and
/// worker, and the speculative counters under vLLM's names (spec_decode_num_…); then the families vLLM's own
/// dashboards read, under its `vllm:` names with its `model_name` label.
enum PrometheusText {
    static func render(_ s: [String: Any]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [String: String], value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples {
                let l = labels.isEmpty ? "" : "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
                out += "\(name)\(l) \(format(v))\n"
            }
        }
        func num(_ x: Any?) -> Double { (x as? Double) ?? (x as? Int).map(Double.init) ?? 0 }

        let tokens = (s["expert_tokens"] as? [[Int]]) ?? []
        family("moe_expert_tokens_total", "counter", "Tokens routed to each expert since start.",
               tokens.enumerated().flatMap { l, row in row.enumerated().map { (["layer": "\(l)", "expert": "\($0)"], Double($1)) } })
        let window = (s["window_expert_tokens"] as? [[Int]]) ?? []
        family("moe_expert_window_tokens", "gauge", "Tokens routed to each expert over the statistics window.",
               window.enumerated().flatMap { l, row in row.enumerated().map { (["layer": "\(l)", "expert": "\($0)"], Double($1)) } })
        let workers = (s["workers"] as? [[String: Any]]) ?? []
        family("moe_worker_tokens_total", "counter", "(token, expert) rows computed by each expert worker.",
               workers.map { (["worker": "\(num($0["worker"]))".replacingOccurrences(of: ".0", with: "")], num($0["tokens"])) })
        family("moe_worker_busy_seconds_total", "counter", "Seconds each expert worker spent computing experts.",
               workers.map { (["worker": "\(Int(num($0["worker"])))"], num($0["busy_seconds"])) })
        family("moe_balancedness", "gauge", "Mean over max tokens per worker (1 is perfect).", [([:], num(s["balancedness"]))])
        family("moe_imbalance_ratio", "gauge", "(max - mean) / mean tokens per worker (0 is perfect).", [([:], num(s["imbalance_ratio"]))])
        family("moe_jain_fairness", "gauge", "Jain's fairness index of tokens per worker.", [([:], num(s["jain_fairness"]))])
        family("moe_wasted_share", "gauge", "Share of expert-compute time spent waiting for the slowest worker.", [([:], num(s["wasted_share"]))])
        let a2a = (s["all_to_all"] as? [String: Any]) ?? [:]
        family("moe_alltoall_bytes_total", "counter", "Bytes exchanged with the expert workers.",
               [(["direction": "sent"], num(a2a["bytes_sent"])), (["direction": "received"], num(a2a["bytes_received"]))])
        family("moe_alltoall_seconds_total", "counter", "Seconds spent in dispatch and combine.", [([:], num(a2a["seconds"]))])
        let distinct = (s["distinct_experts_per_layer"] as? [String: Any]) ?? [:]
        family("moe_distinct_experts_per_layer", "gauge", "Average distinct experts a step reads per MoE layer.",
               [(["step": "decode"], num(distinct["decode"])), (["step": "verification"], num(distinct["verification"]))])
        family("moe_capacity_overflow_total", "counter", "Expert choices dropped by the capacity limit.", [([:], num(s["capacity_overflow"]))])
        family("moe_steps_total", "counter", "Forward steps.", [([:], num(s["steps"]))])
        let tp = (s["throughput"] as? [String: Any]) ?? [:]
        family("moe_generated_tokens_total", "counter", "Tokens generated.", [([:], num(tp["generated_tokens"]))])
        family("moe_generation_tokens_per_second", "gauge", "Generated tokens per second over the window.", [([:], num(tp["window_tokens_per_second"]))])
        family("moe_requests", "gauge", "Requests by state.", [(["state": "running"], num(tp["running"])), (["state": "waiting"], num(tp["waiting"]))])
        let lat = (s["latency"] as? [String: Any]) ?? [:]
        for (name, key, help) in [("moe_time_to_first_token_seconds", "ttft", "Time from submission to the first token."),
                                  ("moe_inter_token_latency_seconds", "itl", "Time between consecutive tokens of a request.")] {
            out += "# HELP \(name) \(help)\n# TYPE \(name) summary\n"
            for q in ["50", "90", "99"] { out += "\(name){quantile=\"0.\(q)\"} \(format(num(lat["\(key)_p\(q)"])))\n" }
            out += "\(name)_count \(format(num(lat["\(key)_count"])))\n"
        }
        let spec = (s["speculative"] as? [String: Any]) ?? [:]
        family("moe_spec_decode_num_drafts_total", "counter", "Speculative verification rounds (vLLM: spec_decode_num_drafts).", [([:], num(spec["drafts"]))])
        family("moe_spec_decode_num_draft_tokens_total", "counter", "Drafted tokens (vLLM: spec_decode_num_draft_tokens).", [([:], num(spec["draft_tokens"]))])
        family("moe_spec_decode_num_accepted_tokens_total", "counter", "Accepted draft tokens (vLLM: spec_decode_num_accepted_tokens).", [([:], num(spec["accepted_tokens"]))])
        family("moe_spec_decode_num_accepted_tokens_per_pos_total", "counter", "Accepted draft tokens by position (vLLM: spec_decode_num_accepted_tokens_per_pos).",
               ((spec["accepted_per_position"] as? [Int]) ?? []).enumerated().map { (["position": "\($0)"], Double($1)) })
        family("moe_stats_overhead_share", "gauge", "Share of step time spent collecting these statistics.", [([:], num(s["collector_overhead_share"]))])
        let model = ["model_name": s["model"] as? String ?? ""]
        family("vllm:num_requests_running", "gauge", "Requests in the running batch.", [(model, num(tp["running"]))])
        family("vllm:num_requests_waiting", "gauge", "Requests waiting to be scheduled.", [(model, num(tp["waiting"]))])
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage (1 is full).", [(model, num(s["kv_cache_usage"]))])
        family("vllm:generation_tokens_total", "counter", "Generated tokens.", [(model, num(tp["generated_tokens"]))])
        family("vllm:spec_decode_num_drafts_total", "counter", "Speculative verification rounds.", [(model, num(spec["drafts"]))])
        family("vllm:spec_decode_num_draft_tokens_total", "counter", "Drafted tokens.", [(model, num(spec["draft_tokens"]))])
        family("vllm:spec_decode_num_accepted_tokens_total", "counter", "Accepted draft tokens.", [(model, num(spec["accepted_tokens"]))])
        return out
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
