import Foundation

/// Human-readable views for `health` and `models`.
public enum ServerInfoFormatting {
    public static func health(_ health: HealthStatus) -> String {
        var rows: [[String]] = []
        if let model = health.model { rows.append(["model", model]) }
        if let workers = health.workers { rows.append(["workers", String(workers)]) }
        if let draft = health.draft { rows.append(["draft", draft ? "yes" : "no"]) }
        if let running = health.running { rows.append(["running", String(running)]) }
        if let waiting = health.waiting { rows.append(["waiting", String(waiting)]) }
        if let uptime = health.uptimeSeconds { rows.append(["uptime", duration(uptime)]) }
        return TextTable.render(header: ["status", health.status], rows: rows)
    }

    public static func models(_ models: ModelList, timeZone: TimeZone = .current) -> String {
        guard !models.data.isEmpty else { return "no models" }
        return TextTable.render(
            header: ["ID", "MAX LEN", "OWNED BY", "CREATED"],
            rows: models.data.map {
                [$0.id, $0.maxModelLen.map(String.init) ?? "-", $0.ownedBy ?? "-", Timestamp.format($0.created, timeZone: timeZone)]
            })
    }

    /// `12.5 s`, `3m 20s`, `2h 5m`: uptimes range from seconds to weeks.
    public static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        // Int(seconds) traps beyond Int's range: show an absurd value as it is instead.
        guard seconds < 1e12 else { return String(format: "%.0f s", seconds) }
        let whole = Int(seconds)
        if whole < 3600 { return "\(whole / 60)m \(whole % 60)s" }
        if whole < 86400 { return "\(whole / 3600)h \(whole % 3600 / 60)m" }
        return "\(whole / 86400)d \(whole % 86400 / 3600)h"
    }
}
