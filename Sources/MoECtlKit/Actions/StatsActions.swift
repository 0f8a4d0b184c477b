import Foundation

/// `moectl stats` and `rebalance`.
public enum StatsActions {
    public static func stats(json: Bool, watch: Double?, client: APIClient, console: Console) async throws {
        let color = isatty(1) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        repeat {
            let raw = try await client.stats()
            if json {
                console.outRaw(raw)
                if watch != nil { console.outLine("") }
            } else {
                guard let obj = try? JSONSerialization.jsonObject(with: raw) as? [String: Any] else {
                    throw MoECtlError.unexpectedResponse("GET /v1/stats: not a JSON object")
                }
                if watch != nil && isatty(1) != 0 { console.out("\u{1B}[H\u{1B}[2J") }
                console.out(StatsFormatting.render(obj, color: color))
            }
            if let w = watch { try await Task.sleep(nanoseconds: UInt64(w * 1e9)) }
        } while watch != nil
    }

    public static func rebalance(dryRun: Bool, json: Bool, client: APIClient, console: Console) async throws {
        let raw = try await client.rebalance(dryRun: dryRun)
        if json { console.outRaw(raw); return }
        guard let obj = try? JSONSerialization.jsonObject(with: raw) as? [String: Any] else {
            throw MoECtlError.unexpectedResponse("POST /v1/rebalance: not a JSON object")
        }
        console.outLine(StatsFormatting.rebalance(obj))
    }
}
