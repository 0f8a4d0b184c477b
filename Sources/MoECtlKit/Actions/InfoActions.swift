/// `moectl health` and `models`.
public enum InfoActions {
    public static func health(json: Bool, client: APIClient, console: Console) async throws {
        let health = try await client.health()
        if json { console.outRaw(health.raw) } else { console.outLine(ServerInfoFormatting.health(health.value)) }
    }

    public static func models(json: Bool, client: APIClient, console: Console) async throws {
        let models = try await client.models()
        if json { console.outRaw(models.raw) } else { console.outLine(ServerInfoFormatting.models(models.value)) }
    }
}
