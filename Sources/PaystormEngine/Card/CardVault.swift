import Crypto
import Foundation
import GRDB
import PaystormStore

/// Stores card numbers encrypted (AES-256-GCM) behind tokens.
///
/// The token is an HMAC-SHA256 of the number under a separate key, so one
/// card always maps to one token (fraud velocity per card needs that) and the
/// token reveals nothing. GCM nonces come from a persisted counter, never
/// from system randomness: unique per key, and deterministic under
/// simulation. Only ciphertext, the token, first 6, last 4 and expiry are
/// written; the CVV never reaches this type.
public struct CardVault {
    private let encryptionKey: SymmetricKey
    private let tokenKey: SymmetricKey
    /// HMAC state keyed with `tokenKey`, copied per token instead of
    /// re-running the key schedule.
    private let tokenMAC: HMAC<SHA256>

    /// - Parameters:
    ///   - encryptionKey: 32 bytes for AES-256-GCM.
    ///   - tokenKey: 32 bytes for the token HMAC.
    /// In production both come from a KMS; in simulation from the scenario seed.
    public init(encryptionKey: Data, tokenKey: Data) throws(CardVaultError) {
        guard encryptionKey.count == 32 else { throw .badKey("encryption key must be 32 bytes, got \(encryptionKey.count)") }
        guard tokenKey.count == 32 else { throw .badKey("token key must be 32 bytes, got \(tokenKey.count)") }
        guard encryptionKey != tokenKey else { throw .badKey("encryption and token keys must differ") }
        self.encryptionKey = SymmetricKey(data: encryptionKey)
        self.tokenKey = SymmetricKey(data: tokenKey)
        self.tokenMAC = HMAC<SHA256>(key: self.tokenKey)
    }

    /// Creates the vault tables (a store migration step).
    public static func createTables(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE card_vault (
                token TEXT PRIMARY KEY,
                ciphertext BLOB NOT NULL,
                first6 TEXT NOT NULL,
                last4 TEXT NOT NULL,
                expiry_month INTEGER NOT NULL,
                expiry_year INTEGER NOT NULL);
            CREATE TABLE card_vault_nonce (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL);
            INSERT INTO card_vault_nonce (id, counter) VALUES (1, 0);
            """)
    }

    /// The token of a card number (stable: same number, same token).
    public func token(for card: CardDetails) -> String {
        var mac = tokenMAC
        var number = card.number
        number.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        return "tok_" + Hex.encode(mac.finalize().prefix(16))
    }

    /// Stores the card if new and returns its token. Runs in the caller's transaction.
    public func store(_ card: CardDetails, in db: Database) throws(CardVaultError) -> String {
        try store(card, token: token(for: card), in: db, statements: EngineStatements(store: nil))
    }

    /// ``store(_:in:)`` for a card whose `token` the caller already computed,
    /// through the engine's prepared statements.
    func store(_ card: CardDetails, token: String, in db: Database, statements: EngineStatements) throws(CardVaultError) -> String {
        do {
            let exists = try statements(.vaultContains, db)
            exists.bind(token, at: 1)
            let known = try exists.step()
            exists.reset()
            if known { return token }
            try statements(.incrementVaultNonce, db).execute()
            let nonce = try statements(.vaultNonce, db)
            guard try nonce.step() else { preconditionFailure("the card vault nonce row is missing") }
            let counter = nonce.int64(at: 0)
            nonce.reset()
            var nonceBytes = Data(count: 12)
            withUnsafeBytes(of: counter.bigEndian) { nonceBytes.replaceSubrange(4..<12, with: $0) }
            let sealed = try AES.GCM.seal(Data(card.number.utf8), using: encryptionKey,
                                          nonce: try AES.GCM.Nonce(data: nonceBytes), authenticating: Data(token.utf8))
            guard let combined = sealed.combined else { throw CardVaultError.crypto("AES-GCM produced no combined box") }
            let insert = try statements(.vaultInsert, db)
            insert.bind(token, at: 1)
            insert.bind(combined, at: 2)
            insert.bind(card.first6, at: 3)
            insert.bind(card.last4, at: 4)
            insert.bind(Int64(card.expiryMonth), at: 5)
            insert.bind(Int64(card.expiryYear), at: 6)
            try insert.execute()
            return token
        } catch let error as CardVaultError {
            throw error
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Decrypts a stored card number (only the PSP adapter needs this).
    /// - Throws: ``CardVaultError/unknownToken(_:)`` or a crypto error if the
    ///   ciphertext was tampered with.
    public func cardNumber(for token: String, in db: Database) throws(CardVaultError) -> String {
        do {
            guard let combined = try db.value("SELECT ciphertext FROM card_vault WHERE token = ?", as: Data.self, [token]) else {
                throw CardVaultError.unknownToken(token)
            }
            let box = try AES.GCM.SealedBox(combined: combined)
            let plain = try AES.GCM.open(box, using: encryptionKey, authenticating: Data(token.utf8))
            return String(decoding: plain, as: UTF8.self)
        } catch let error as CardVaultError {
            throw error
        } catch {
            throw .crypto("cannot decrypt card \(token): \(error)")
        }
    }
}

public enum CardVaultError: Error, Equatable, CustomStringConvertible {
    case badKey(String)
    case unknownToken(String)
    case crypto(String)
    case storage(String)

    public var description: String {
        switch self {
        case let .badKey(message): return "card vault: \(message)"
        case let .unknownToken(token): return "card vault: no card for token \(token)"
        case let .crypto(message): return "card vault: \(message)"
        case let .storage(message): return "card vault storage: \(message)"
        }
    }
}
