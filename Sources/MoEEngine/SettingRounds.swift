import MoEBalance

/// Decode rates of several speculation settings ("0" is plain decoding, "1"…"6" fixed k, "auto") measured in
/// interleaved rounds, each round with its own plain-decoding rate: this VM's speed moves by tens of percent from
/// minute to minute, so settings are only compared within a round, and over rounds by the median (nearest rank).
public struct SettingRounds: Sendable {
    /// Per round: setting → tokens per second; every round has plain decoding ("0").
    public var rates: [[String: Double]]

    public init(rates: [[String: Double]]) { self.rates = rates }

    public static func median(_ xs: [Double]) -> Double { BalanceMetrics.percentile(xs, 50) }

    /// Median over these rounds (all by default) of a setting's rate ÷ plain decoding of the same round.
    public func speedup(_ setting: String, over rounds: [Int]? = nil) -> Double {
        Self.median((rounds ?? Array(rates.indices)).map { rates[$0][setting]! / rates[$0]["0"]! })
    }

    /// The setting among `candidates` with the highest median speedup over these rounds (the first on a tie).
    public func best(among candidates: [String], over rounds: [Int]? = nil) -> String? {
        candidates.max { speedup($0, over: rounds) < speedup($1, over: rounds) }
    }

    /// Median over rounds of a ÷ b in the same round.
    public func ratio(_ a: String, to b: String) -> Double {
        Self.median(rates.indices.map { rates[$0][a]! / rates[$0][b]! })
    }

    /// Median over rounds of `a` ÷ the setting among `candidates` that is best over the *other* rounds. Picking the
    /// best of several noisy medians favours whichever setting's noise ran high (the winner's curse), so `ratio(a,
    /// to: best(among:))` is biased against `a`; held out, the choice and the comparison use different rounds. Nil
    /// with fewer than two rounds.
    public func heldOutRatio(_ a: String, among candidates: [String]) -> Double? {
        guard rates.count >= 2 else { return nil }
        return Self.median(rates.indices.map { i in
            let b = best(among: candidates, over: rates.indices.filter { $0 != i })!
            return rates[i][a]! / rates[i][b]!
        })
    }
}
