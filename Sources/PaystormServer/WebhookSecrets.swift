import Foundation
import PaystormEngine

/// The secrets webhooks are signed with: one per PSP, under which the PSP
/// signs the webhooks it sends to `POST /webhook` (a webhook can complete a
/// payment, so whoever knows the secret can complete one), and the one the
/// server signs merchant notifications with.
///
/// `serve --webhook-secrets FILE` and `psp-sandbox --webhook-secrets FILE`
/// read them, in the format of the API key file: one `name secret` pair a
/// line, `name` a PSP id or `notifications`; `#` starts a comment. Without a
/// file both use ``development(pspIDs:)``: values written in this source,
/// so known to everyone, which `serve` accepts only on a loopback address.
public struct WebhookSecrets: Sendable, Equatable {
    /// PSP id → the secret its webhooks are signed with.
    public var psps: [String: String]
    /// The secret merchant notifications are signed with (per-merchant
    /// secrets are derived from it); `nil` when a file for the sandbox,
    /// which sends none, leaves it out.
    public var notifications: String?
    /// Whether these are the public development defaults.
    public var isDevelopment: Bool

    public init(psps: [String: String], notifications: String?, isDevelopment: Bool = false) {
        self.psps = psps
        self.notifications = notifications
        self.isDevelopment = isDevelopment
    }

    /// The name of the notifications' secret in a file.
    public static let notificationsName = "notifications"
    /// Shortest secret a file may give, in characters.
    public static let minimumLength = 16

    /// The development defaults: `whsec_<psp>` for each PSP, and the
    /// engine's default notification secret. Public: for loopback only.
    public static func development(pspIDs: [String]) -> WebhookSecrets {
        WebhookSecrets(psps: Dictionary(pspIDs.map { ($0, "whsec_\($0)") }, uniquingKeysWith: { first, _ in first }),
                       notifications: EngineConfiguration(psps: []).merchantWebhookSecret, isDevelopment: true)
    }

    /// Reads a secrets file (see the type's description).
    public static func parse(_ text: String, file: String) throws(APIWire.BadRequest) -> WebhookSecrets {
        var secrets = WebhookSecrets(psps: [:], notifications: nil)
        for (line, name, secret) in try KeyFile.pairs(text, file: file) {
            guard secret.count >= minimumLength else {
                throw APIWire.BadRequest(field: "\(file):\(line)", message: "the secret of \(name) has \(secret.count) characters; at least \(minimumLength) expected")
            }
            if name == notificationsName {
                guard secrets.notifications == nil else {
                    throw APIWire.BadRequest(field: "\(file):\(line)", message: "a second secret for \(name)")
                }
                secrets.notifications = secret
            } else {
                guard secrets.psps.updateValue(secret, forKey: name) == nil else {
                    throw APIWire.BadRequest(field: "\(file):\(line)", message: "a second secret for PSP \(name)")
                }
            }
        }
        return secrets
    }

    /// Checks that there is a secret for each of `pspIDs` and, when
    /// `notifications`, for merchant notifications; the error names what is missing.
    public func require(pspIDs: [String], notifications: Bool, file: String) throws(APIWire.BadRequest) {
        if let missing = pspIDs.first(where: { psps[$0] == nil }) {
            throw APIWire.BadRequest(field: file, message: "no secret for PSP \(missing); expected a line `\(missing) <secret>`")
        }
        if notifications && self.notifications == nil {
            throw APIWire.BadRequest(field: file, message: "no secret for merchant notifications; expected a line `\(Self.notificationsName) <secret>`")
        }
    }

    /// Whether `host` (an address to listen on) is reachable only from this
    /// machine: `localhost`, 127.0.0.0/8 or ::1.
    public static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        return false
    }
}
