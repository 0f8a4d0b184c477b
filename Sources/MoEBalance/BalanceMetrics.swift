/// Load-balance figures with the field's definitions, so numbers compare with other systems.
public enum BalanceMetrics {
    /// mean / max (vLLM, SGLang): 1 is perfect; 1/n means one worker does everything. 1 when all are idle.
    public static func balancedness(_ x: [Double]) -> Double {
        guard let m = x.max(), m > 0 else { return 1 }
        return mean(x) / m
    }

    /// (max − mean) / mean (TensorRT-LLM): 0 is perfect. 0 when all are idle.
    public static func imbalanceRatio(_ x: [Double]) -> Double {
        let mu = mean(x)
        guard mu > 0, let m = x.max() else { return 0 }
        return (m - mu) / mu
    }

    /// Jain's fairness index (Σx)² / (n · Σx²): 1 is perfect, 1/n is one worker doing everything.
    public static func jainFairness(_ x: [Double]) -> Double {
        let s = x.reduce(0, +), s2 = x.reduce(0) { $0 + $1 * $1 }
        guard s2 > 0 else { return 1 }
        return s * s / (Double(x.count) * s2)
    }

    /// The share of expert-compute time spent waiting for the slowest worker: Σ(max − tᵢ) / (n · max) over busy
    /// times tᵢ. Every step ends when its slowest worker does, so this much of the workers' time is idle.
    public static func wastedShare(_ busy: [Double]) -> Double {
        guard let m = busy.max(), m > 0 else { return 0 }
        return busy.reduce(0) { $0 + (m - $1) } / (Double(busy.count) * m)
    }

    static func mean(_ x: [Double]) -> Double { x.isEmpty ? 0 : x.reduce(0, +) / Double(x.count) }

    /// Nearest-rank percentile (p in 0…100) of unsorted values; 0 for none.
    public static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        let rank = Int((p / 100 * Double(s.count)).rounded(.up))
        return s[min(max(rank, 1), s.count) - 1]
    }
}
