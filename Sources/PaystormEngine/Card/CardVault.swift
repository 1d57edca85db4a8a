import Crypto
import Foundation
import GRDB
import PaystormStore

/// Stores card numbers encrypted (AES-256-GCM) behind tokens.
///
/// The token is an HMAC-SHA256 of the number under a separate key, so one
/// card always maps to one token (fraud velocity per card needs that) and the
/// token reveals nothing. The GCM nonce is the next 12 bytes of the same
/// MAC — a synthetic IV: a function of the number under a secret key, never
/// system randomness, so deterministic under simulation. Two different
/// numbers share a nonce with probability 2⁻⁹⁶; one number always gets the
/// same nonce and the same ciphertext, which reveals only what its token
/// already does (and a card is stored once). Only ciphertext, the token and
/// its key (a hash of the token), first 6, last 4 and expiry are written;
/// the CVV never reaches this type.
///
/// Cards are rows appended in the order they are first stored, found
/// through a small index on a 64-bit key of the token (``tokenKey(_:)``),
/// the whole token compared on the row (``appendInOrder(_:)``).
///
/// (Nonces used to come from a counter row, an update and a read in every
/// payment's transaction; `card_vault_nonce` is gone since v9.)
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

    /// The vault as of migration v9: one row per card in the order cards
    /// were first stored (`card_id`), and an index on ``tokenKey(_:)``.
    ///
    /// Keyed by the token itself, the table was a B-tree in the order of an
    /// HMAC, so every new card was written into a leaf at random and looked
    /// up at random before: at 118 bytes a card, about 0.9 GB at 10 million
    /// cards, far past SQLite's page cache, for every payment with a new
    /// card. Rows now go to the table's end; what is written and read at
    /// random is the index, about 20 bytes a card. Two tokens may share a
    /// key: every lookup compares the whole token on the row, so they are
    /// two cards. A token is unique because a card is stored only after its
    /// lookup finds nothing, in the same transaction.
    ///
    /// Existing cards are copied in token order (their first-stored order
    /// is not recorded); cards stored later follow them.
    static func appendInOrder(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE card_vault_appended (
                card_id INTEGER PRIMARY KEY,
                token_key INTEGER NOT NULL,
                token TEXT NOT NULL,
                ciphertext BLOB NOT NULL,
                first6 TEXT NOT NULL,
                last4 TEXT NOT NULL,
                expiry_month INTEGER NOT NULL,
                expiry_year INTEGER NOT NULL)
            """)
        let insert = try db.makeStatement(sql: """
            INSERT INTO card_vault_appended (token_key, token, ciphertext, first6, last4, expiry_month, expiry_year)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        let cards = try Row.fetchCursor(db, sql: """
            SELECT token, ciphertext, first6, last4, expiry_month, expiry_year FROM card_vault ORDER BY token
            """)
        while let card = try cards.next() {
            let token: String = card["token"]
            try insert.execute(arguments: [tokenKey(token), token, card["ciphertext"], card["first6"], card["last4"],
                                           card["expiry_month"], card["expiry_year"]])
        }
        try db.execute(sql: """
            DROP TABLE card_vault;
            ALTER TABLE card_vault_appended RENAME TO card_vault;
            CREATE INDEX card_vault_token_key ON card_vault(token_key);
            DROP TABLE card_vault_nonce;
            """)
    }

    /// The vault's index key of a token: 64-bit FNV-1a of its UTF-8 bytes,
    /// as a signed SQLite integer. Defined for any text, so a token of any
    /// form, from any store, has one.
    static func tokenKey(_ token: String) -> Int64 {
        Int64(bitPattern: FraudDetector.cardKey(token))
    }

    /// The token of a card number (stable: same number, same token).
    public func token(for card: CardDetails) -> String { tokenized(card).token }

    /// A card's token, its vault key and GCM nonce, from one MAC of its number.
    struct Tokenized {
        var token: String
        var key: Int64
        fileprivate var nonce: AES.GCM.Nonce
    }

    func tokenized(_ card: CardDetails) -> Tokenized {
        var mac = tokenMAC
        var number = card.number
        number.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        let tag = mac.finalize()
        return tag.withUnsafeBytes { bytes in
            // 12 bytes always make a valid GCM nonce.
            let token = "tok_" + Hex.encode(bytes.prefix(16))
            return Tokenized(token: token, key: Self.tokenKey(token), nonce: try! AES.GCM.Nonce(data: bytes[16..<28]))
        }
    }

    /// Stores the card if new and returns its token. Runs in the caller's transaction.
    public func store(_ card: CardDetails, in db: Database) throws(CardVaultError) -> String {
        try store(card, tokenized(card), in: db, statements: EngineStatements(store: nil))
    }

    /// ``store(_:in:)`` for a card the caller already tokenized, through the
    /// engine's prepared statements.
    func store(_ card: CardDetails, _ tokenized: Tokenized, in db: Database, statements: EngineStatements) throws(CardVaultError) -> String {
        let token = tokenized.token
        do {
            let exists = try statements(.vaultContains, db)
            exists.bind(tokenized.key, at: 1)
            exists.bind(token, at: 2)
            let known = try exists.step()
            exists.reset()
            if known { return token }
            let sealed = try AES.GCM.seal(Data(card.number.utf8), using: encryptionKey, nonce: tokenized.nonce,
                                          authenticating: Data(token.utf8))
            guard let combined = sealed.combined else { throw CardVaultError.crypto("AES-GCM produced no combined box") }
            let insert = try statements(.vaultInsert, db)
            insert.bind(tokenized.key, at: 1)
            insert.bind(token, at: 2)
            insert.bind(combined, at: 3)
            insert.bind(card.displayableFirst6, at: 4)
            insert.bind(card.last4, at: 5)
            insert.bind(Int64(card.expiryMonth), at: 6)
            insert.bind(Int64(card.expiryYear), at: 7)
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
            guard let combined = try db.value("SELECT ciphertext FROM card_vault WHERE token_key = ? AND token = ?", as: Data.self,
                                              [Self.tokenKey(token), token]) else {
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
