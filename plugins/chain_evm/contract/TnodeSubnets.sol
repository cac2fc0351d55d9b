// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title tnode subnets on an EVM chain
/// @notice What tnode's embedded chain holds, as one contract: subnets and their hyperparameters,
/// proof-of-work and burn registration with difficulty/burn adjustment, the uid cap with immunity
/// and pruning, stake in the native currency, weights (direct or commit-reveal), published
/// addresses, and the epoch's emission posted by a keeper and credited as stake.
/// Keys: tnode hotkeys and coldkeys are Ed25519 public keys (bytes32); each acts through an EVM
/// account bound to it by an Ed25519 signature over the account (checked off-chain by every node;
/// see docs/chain-evm.md). Names and argument order follow Bittensor's EVM precompiles where the
/// functions overlap (burnedRegister, setWeights, commitWeights, revealWeights).
contract TnodeSubnets {
    // ------------------------------------------------------------------ hyperparameter layout
    // Index of each value in a subnet's hyperparameter array. Integers as they are, booleans 0/1,
    // fractions as fixed point 1e9, token amounts in wei.
    uint256 constant HP_COUNT = 30;
    uint256 constant TEMPO = 0;
    uint256 constant BLOCK_EMISSION = 1;
    uint256 constant MAX_SUPPLY = 2;
    uint256 constant ACTIVITY_CUTOFF = 6;
    uint256 constant MAX_UIDS = 7;
    uint256 constant IMMUNITY = 9;
    uint256 constant MIN_WEIGHTS = 10;
    uint256 constant MAX_WEIGHT_LIMIT = 11;
    uint256 constant WEIGHTS_RATE_LIMIT = 12;
    uint256 constant WEIGHTS_VERSION = 13;
    uint256 constant COMMIT_REVEAL = 14;
    uint256 constant CR_PERIOD = 15;
    uint256 constant CR_WINDOW = 16;
    uint256 constant DIFFICULTY = 17;
    uint256 constant MIN_DIFFICULTY = 18;
    uint256 constant MAX_DIFFICULTY = 19;
    uint256 constant ADJ_INTERVAL = 20;
    uint256 constant ADJ_ALPHA = 21;
    uint256 constant TARGET_REGS = 22;
    uint256 constant MAX_REGS_BLOCK = 23;
    uint256 constant MAX_REGS_INTERVAL = 24;
    uint256 constant POW_WINDOW = 25;
    uint256 constant BURN = 26;
    uint256 constant MIN_BURN = 27;
    uint256 constant MAX_BURN = 28;
    uint256 constant SERVING_RATE_LIMIT = 29;

    uint256 constant FIXED = 1e9;
    uint256 constant WEI_PER_UNIT = 1e9; // tnode base unit (1e-9 token) in wei
    uint256 constant U16_MAX = 65535;
    uint256 constant MAX_COMMITS = 10;
    uint256 constant MAX_ADJUST_STEPS = 64;
    bytes constant COMMIT_DOMAIN = "tnode-commit-v1\n";
    bytes constant BLAKE2B_256_IV =
        hex"28c9bdf267e6096a3ba7ca8485ae67bb2bf894fe72f36e3cf1361d5f3af54fa5d182e6ad7f520e511f6c3e2b8c68059b6bbd41fbabd9831f79217e1319cde05b";

    // ------------------------------------------------------------------ errors (the code of tnode's ChainError)
    error ChainError(string code);

    // ------------------------------------------------------------------ state
    struct Neuron {
        uint64 registeredAt;
        uint64 lastUpdate;
        uint64 weightsSetAt; // block + 1; 0 = never
        uint64 emission; // base units paid at the last epoch
    }

    struct Commit {
        bytes32 hash;
        uint64 block_;
    }

    struct Subnet {
        bool exists;
        uint16 n;
        uint64 createdAt;
        uint64 lastEpochBlock;
        uint64 adjustments; // adjustment intervals applied so far
        uint64 regsBlock; // block of regsInBlock
        uint32 regsInBlock;
        uint32 powRegs; // in the current adjustment interval
        uint32 burnRegs;
        uint256 difficulty;
        uint256 burn;
        uint256 pending; // emission accrued up to lastAccrual, wei
        uint64 lastAccrual;
        string modality;
    }

    /// An epoch being posted in chunks (several transactions; see postEpochChunk).
    struct Posting {
        uint64 epochBlock; // 0 = none open
        uint16 next; // first uid of the next chunk
        uint16 n; // uids at the first chunk
        uint256 pending; // emission accrued as of epochBlock, wei
        uint256 paid; // credited by the chunks so far, wei
        bytes32 digest; // chained hash of the chunks so far
    }

    address public owner;
    address public keeper;
    uint256 public reserve; // native currency backing emission, wei
    uint256 public issued; // emission credited so far, wei

    uint16[] internal netuids;
    mapping(uint16 => Subnet) internal subnets_;
    mapping(uint16 => uint256[HP_COUNT]) internal hp;
    mapping(uint16 => mapping(uint16 => Neuron)) internal neurons;
    mapping(uint16 => mapping(uint16 => bytes32)) public hotkeyOf;
    mapping(uint16 => mapping(bytes32 => uint16)) internal uidPlus1; // uid + 1; 0 = none
    mapping(uint16 => mapping(uint16 => uint16[])) internal weightUids;
    mapping(uint16 => mapping(uint16 => uint16[])) internal weightValues;
    mapping(uint16 => mapping(bytes32 => Commit[])) internal commits;
    mapping(uint16 => mapping(uint16 => string)) internal addrs;
    mapping(uint16 => mapping(uint16 => string)) internal peerIds;
    mapping(uint16 => mapping(uint16 => uint64)) internal addrsSetAt; // block + 1
    mapping(uint16 => mapping(uint64 => mapping(bytes32 => mapping(uint64 => bool)))) internal usedSeals;
    mapping(uint16 => mapping(uint64 => bytes32)) public epochEmissionHash;
    mapping(uint16 => Posting) public epochPosting;

    mapping(bytes32 => address) public accountOf; // Ed25519 key → bound EVM account
    mapping(address => bytes32) public keyOf;
    mapping(bytes32 => bytes) public bindingSignature;
    mapping(bytes32 => bytes32) public hotkeyOwner; // hotkey → coldkey
    mapping(bytes32 => mapping(bytes32 => uint256)) public stakeOf; // coldkey → hotkey → wei
    mapping(bytes32 => uint256) public totalStake; // hotkey → wei

    event KeyBound(bytes32 indexed key, address indexed account, bytes signature);
    event SubnetCreated(uint16 indexed netuid, string modality);
    event NeuronRegistered(uint16 indexed netuid, uint16 uid, bytes32 hotkey, bytes32 replaced, bool burned);
    event WeightsSet(uint16 indexed netuid, uint16 uid, uint256 count);
    event WeightsCommitted(uint16 indexed netuid, uint16 uid, bytes32 hash);
    event AddrsPublished(uint16 indexed netuid, uint16 uid);
    event StakeChanged(bytes32 indexed coldkey, bytes32 indexed hotkey, uint256 stake);
    event EpochPosted(
        uint16 indexed netuid, uint64 epochBlock, bytes32 emissionHash, uint256 paid, uint256 pending, address keeper
    );
    event EpochChunkPosted(uint16 indexed netuid, uint64 epochBlock, uint16 start, uint16 count);
    event EpochDisputed(uint16 indexed netuid, uint64 epochBlock, bytes32 by, bytes32 expectedHash);
    event KeeperChanged(address keeper);

    constructor(address keeper_) {
        owner = msg.sender;
        keeper = keeper_ == address(0) ? msg.sender : keeper_;
    }

    function _fail(string memory code) internal pure {
        revert ChainError(code);
    }

    // ------------------------------------------------------------------ administration
    function setKeeper(address keeper_) external {
        if (msg.sender != owner) _fail("not_owner");
        keeper = keeper_;
        emit KeeperChanged(keeper_);
    }

    /// Native currency that backs emission (emission is credited as stake, paid out on removeStake).
    function fundReserve() external payable {
        reserve += msg.value;
    }

    function createSubnet(uint16 netuid, string calldata modality, uint256[HP_COUNT] calldata params) external {
        if (msg.sender != owner) _fail("not_owner");
        if (subnets_[netuid].exists) _fail("subnet_exists");
        if (params[TEMPO] == 0 || params[ADJ_INTERVAL] == 0 || params[TARGET_REGS] == 0 || params[MAX_UIDS] == 0
            || params[MAX_UIDS] > U16_MAX || params[DIFFICULTY] == 0) {
            _fail("invalid_args");
        }
        Subnet storage s = subnets_[netuid];
        s.exists = true;
        s.createdAt = uint64(block.number);
        s.lastEpochBlock = uint64(block.number);
        s.lastAccrual = uint64(block.number);
        s.adjustments = uint64((block.number == 0 ? 0 : block.number - 1) / params[ADJ_INTERVAL]);
        s.difficulty = params[DIFFICULTY];
        s.burn = params[BURN];
        s.modality = modality;
        hp[netuid] = params;
        netuids.push(netuid);
        emit SubnetCreated(netuid, modality);
    }

    // ------------------------------------------------------------------ identity
    /// Bind the calling account to an Ed25519 key. ``signature`` is the key's signature over
    /// "tnode-evm-bind-v1\n" ‖ chainid (32 bytes) ‖ this contract (20 bytes) ‖ the account (20 bytes);
    /// nodes verify it off-chain and ignore keys whose binding does not verify.
    function bindKey(bytes32 key, bytes calldata signature) public {
        address bound = accountOf[key];
        if (bound == msg.sender) return;
        if (bound != address(0)) _fail("key_bound");
        if (keyOf[msg.sender] != bytes32(0)) _fail("account_bound");
        if (signature.length != 64) _fail("invalid_args");
        accountOf[key] = msg.sender;
        keyOf[msg.sender] = key;
        bindingSignature[key] = signature;
        emit KeyBound(key, msg.sender, signature);
    }

    function _pay(address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) _fail("transfer_failed");
    }

    function _caller() internal view returns (bytes32 key) {
        key = keyOf[msg.sender];
        if (key == bytes32(0)) _fail("unbound_account");
    }

    function _subnet(uint16 netuid) internal view returns (Subnet storage s) {
        s = subnets_[netuid];
        if (!s.exists) _fail("unknown_subnet");
    }

    function _uid(uint16 netuid, bytes32 hotkey) internal view returns (uint16) {
        uint16 u = uidPlus1[netuid][hotkey];
        if (u == 0) _fail("not_registered");
        return u - 1;
    }

    // ------------------------------------------------------------------ difficulty and burn
    function _next(uint16 netuid, uint256 cur, uint256 regs, uint256 lo, uint256 hi) internal view returns (uint256) {
        uint256[HP_COUNT] storage p = hp[netuid];
        uint256 target = p[TARGET_REGS];
        uint256 alpha = p[ADJ_ALPHA];
        uint256 den = 2 * target * FIXED;
        uint256 num = alpha * cur * 2 * target + (FIXED - alpha) * cur * (regs + target);
        uint256 v = (num + den / 2) / den;
        return v < lo ? lo : (v > hi ? hi : v);
    }

    /// Difficulty, burn and the interval counters as of ``blockNumber`` (adjustments after every
    /// ``adjustment_interval`` blocks, applied lazily; idle intervals beyond 64 change nothing more).
    function _adjusted(uint16 netuid, uint256 blockNumber)
        internal view returns (uint256 diff, uint256 burn, uint64 adjustments, bool reset)
    {
        Subnet storage s = subnets_[netuid];
        uint256[HP_COUNT] storage p = hp[netuid];
        diff = s.difficulty;
        burn = s.burn;
        adjustments = s.adjustments;
        uint256 due = (blockNumber == 0 ? 0 : blockNumber - 1) / p[ADJ_INTERVAL];
        if (due <= adjustments) return (diff, burn, adjustments, false);
        uint256 steps = due - adjustments;
        if (steps > MAX_ADJUST_STEPS) steps = MAX_ADJUST_STEPS;
        for (uint256 i = 0; i < steps; i++) {
            diff = _next(netuid, diff, i == 0 ? s.powRegs : 0, p[MIN_DIFFICULTY], p[MAX_DIFFICULTY]);
            burn = _next(netuid, burn, i == 0 ? s.burnRegs : 0, p[MIN_BURN], p[MAX_BURN]);
        }
        return (diff, burn, uint64(due), true);
    }

    function _settle(uint16 netuid) internal {
        (uint256 d, uint256 b, uint64 adj, bool reset) = _adjusted(netuid, block.number);
        if (!reset) return;
        Subnet storage s = subnets_[netuid];
        s.difficulty = d;
        s.burn = b;
        s.adjustments = adj;
        s.powRegs = 0;
        s.burnRegs = 0;
    }

    function difficulty(uint16 netuid) public view returns (uint256 d) {
        _subnet(netuid);
        (d,,,) = _adjusted(netuid, block.number + 1);
    }

    function burnCost(uint16 netuid) public view returns (uint256 b) {
        _subnet(netuid);
        (, b,,) = _adjusted(netuid, block.number + 1);
    }

    // ------------------------------------------------------------------ registration
    /// PoW seal: keccak256(sha256(nonce as u64 little-endian ‖ keccak256(blockhash ‖ hotkey))); it
    /// meets difficulty d iff seal · d < 2^256 (as subtensor checks it).
    function seal(bytes32 blockHash, bytes32 hotkey, uint64 nonce) public pure returns (bytes32) {
        bytes32 inner = keccak256(abi.encodePacked(blockHash, hotkey));
        return keccak256(abi.encodePacked(sha256(abi.encodePacked(_le64(nonce), inner))));
    }

    function _le64(uint64 x) internal pure returns (bytes8 out) {
        uint64 r = 0;
        for (uint256 i = 0; i < 8; i++) {
            r = (r << 8) | (x & 0xff);
            x >>= 8;
        }
        out = bytes8(r);
    }

    function _checkRate(uint16 netuid) internal {
        Subnet storage s = subnets_[netuid];
        uint256[HP_COUNT] storage p = hp[netuid];
        if (s.regsBlock != block.number) {
            s.regsBlock = uint64(block.number);
            s.regsInBlock = 0;
        }
        if (s.regsInBlock >= p[MAX_REGS_BLOCK]) _fail("too_many_registrations");
        if (s.powRegs + s.burnRegs >= p[MAX_REGS_INTERVAL]) _fail("too_many_registrations");
    }

    function _checkHotkey(uint16 netuid, bytes32 hotkey, bytes32 coldkey) internal view {
        if (uidPlus1[netuid][hotkey] != 0) _fail("already_registered");
        bytes32 o = hotkeyOwner[hotkey];
        if (o != bytes32(0) && o != coldkey) _fail("hotkey_owned");
    }

    /// Register the calling account's hotkey with a PoW seal over block ``blockNumber``.
    function register(uint16 netuid, uint64 blockNumber, uint64 nonce, bytes32 coldkey) external returns (uint16) {
        _subnet(netuid);
        bytes32 hotkey = _caller();
        if (coldkey == bytes32(0)) _fail("invalid_args");
        if (blockNumber >= block.number) _fail("unknown_block");
        if (block.number - 1 - blockNumber >= hp[netuid][POW_WINDOW]) _fail("stale_block");
        _settle(netuid);
        _checkHotkey(netuid, hotkey, coldkey);
        _checkRate(netuid);
        Subnet storage s = subnets_[netuid];
        bytes32 sealValue = seal(blockhash(blockNumber), hotkey, nonce);
        if (uint256(sealValue) > type(uint256).max / s.difficulty) _fail("invalid_seal");
        if (usedSeals[netuid][blockNumber][hotkey][nonce]) _fail("seal_used");
        usedSeals[netuid][blockNumber][hotkey][nonce] = true;
        s.powRegs += 1;
        return _place(netuid, hotkey, coldkey, false);
    }

    /// Register ``hotkey`` for the calling coldkey by burning the current burn cost (sent as value;
    /// the excess is returned).
    function burnedRegister(uint16 netuid, bytes32 hotkey) external payable returns (uint16) {
        _subnet(netuid);
        bytes32 coldkey = _caller();
        if (hotkey == bytes32(0)) _fail("invalid_args");
        _settle(netuid);
        _checkHotkey(netuid, hotkey, coldkey);
        _checkRate(netuid);
        Subnet storage s = subnets_[netuid];
        uint256 cost = s.burn;
        if (msg.value < cost) _fail("insufficient_balance");
        s.burnRegs += 1;
        uint16 uid = _place(netuid, hotkey, coldkey, true);
        _pay(address(0), cost);
        if (msg.value > cost) _pay(msg.sender, msg.value - cost);
        return uid;
    }

    /// The uid a registration replaces in a full subnet: the non-immune uid with the lowest
    /// emission (ties: earliest registration, then lowest uid); ``found`` false when all are immune.
    function pruneCandidate(uint16 netuid) public view returns (bool found, uint16 uid) {
        Subnet storage s = subnets_[netuid];
        uint256 immunity = hp[netuid][IMMUNITY];
        uint256 bestEmission;
        uint256 bestReg;
        for (uint16 u = 0; u < s.n; u++) {
            Neuron storage nr = neurons[netuid][u];
            if (uint256(nr.registeredAt) + immunity > block.number) continue;
            if (!found || nr.emission < bestEmission || (nr.emission == bestEmission && nr.registeredAt < bestReg)) {
                found = true;
                uid = u;
                bestEmission = nr.emission;
                bestReg = nr.registeredAt;
            }
        }
    }

    function _place(uint16 netuid, bytes32 hotkey, bytes32 coldkey, bool burned) internal returns (uint16 uid) {
        Subnet storage s = subnets_[netuid];
        bytes32 replaced;
        if (s.n < hp[netuid][MAX_UIDS]) {
            uid = s.n;
            s.n += 1;
        } else {
            bool found;
            // A uid is not replaced under an epoch being posted: its chunk may still be due.
            if (epochPosting[netuid].epochBlock != 0) _fail("epoch_posting");
            (found, uid) = pruneCandidate(netuid);
            if (!found) _fail("subnet_full");
            replaced = hotkeyOf[netuid][uid];
            delete uidPlus1[netuid][replaced];
            delete commits[netuid][replaced];
            delete weightUids[netuid][uid];
            delete weightValues[netuid][uid];
            delete addrs[netuid][uid];
            delete peerIds[netuid][uid];
            delete addrsSetAt[netuid][uid];
        }
        neurons[netuid][uid] = Neuron(uint64(block.number), uint64(block.number), 0, 0);
        hotkeyOf[netuid][uid] = hotkey;
        uidPlus1[netuid][hotkey] = uid + 1;
        hotkeyOwner[hotkey] = coldkey;
        s.regsInBlock += 1;
        emit NeuronRegistered(netuid, uid, hotkey, replaced, burned);
    }

    // ------------------------------------------------------------------ stake
    function addStake(bytes32 hotkey) external payable {
        bytes32 coldkey = _caller();
        if (hotkeyOwner[hotkey] == bytes32(0)) _fail("unknown_hotkey");
        if (msg.value == 0) _fail("invalid_amount");
        stakeOf[coldkey][hotkey] += msg.value;
        totalStake[hotkey] += msg.value;
        emit StakeChanged(coldkey, hotkey, stakeOf[coldkey][hotkey]);
    }

    function removeStake(bytes32 hotkey, uint256 amount) external {
        bytes32 coldkey = _caller();
        if (amount == 0) _fail("invalid_amount");
        uint256 have = stakeOf[coldkey][hotkey];
        if (have < amount) _fail("insufficient_stake");
        stakeOf[coldkey][hotkey] = have - amount;
        totalStake[hotkey] -= amount;
        emit StakeChanged(coldkey, hotkey, have - amount);
        _pay(msg.sender, amount);
    }

    // ------------------------------------------------------------------ weights
    function _rateLimit(uint64 lastPlus1, uint256 limit) internal view {
        if (lastPlus1 != 0 && block.number - (lastPlus1 - 1) < limit) _fail("rate_limited");
    }

    /// Check a vector against the subnet's rules; returns it max-upscaled (zeros kept).
    function _checked(uint16 netuid, uint16[] calldata dests, uint16[] calldata values, uint64 versionKey)
        internal view returns (uint16[] memory up)
    {
        uint256[HP_COUNT] storage p = hp[netuid];
        uint256 n = subnets_[netuid].n;
        if (dests.length != values.length) _fail("weights_length_mismatch");
        if (versionKey < p[WEIGHTS_VERSION]) _fail("incorrect_weights_version");
        uint256[] memory seen = new uint256[](n / 256 + 1);
        uint256 top = 0;
        for (uint256 i = 0; i < dests.length; i++) {
            uint256 d = dests[i];
            if (d >= n) _fail("uid_out_of_range");
            uint256 bit = 1 << (d % 256);
            if (seen[d / 256] & bit != 0) _fail("duplicate_uids");
            seen[d / 256] |= bit;
            if (values[i] > top) top = values[i];
        }
        up = new uint16[](values.length);
        uint256 nonzero = 0;
        uint256 total = 0;
        uint256 maxUp = 0;
        for (uint256 i = 0; i < values.length; i++) {
            uint256 v = top == 0 ? 0 : (uint256(values[i]) * U16_MAX + top / 2) / top;
            up[i] = uint16(v);
            if (v > 0) nonzero++;
            total += v;
            if (v > maxUp) maxUp = v;
        }
        uint256 needed = p[MIN_WEIGHTS] < n ? p[MIN_WEIGHTS] : n;
        if (nonzero < needed) _fail("too_few_weights");
        if (total > 0 && nonzero > 1 && maxUp * FIXED * U16_MAX > (p[MAX_WEIGHT_LIMIT] * U16_MAX + FIXED) * total) {
            _fail("max_weight_exceeded");
        }
    }

    function _store(uint16 netuid, uint16 uid, uint16[] calldata dests, uint16[] memory up) internal {
        weightUids[netuid][uid] = dests;
        weightValues[netuid][uid] = up;
        neurons[netuid][uid].lastUpdate = uint64(block.number);
        emit WeightsSet(netuid, uid, dests.length);
    }

    function setWeights(uint16 netuid, uint16[] calldata dests, uint16[] calldata weights, uint64 versionKey) external {
        _subnet(netuid);
        if (hp[netuid][COMMIT_REVEAL] != 0) _fail("commit_reveal_enabled");
        uint16 uid = _uid(netuid, _caller());
        _rateLimit(neurons[netuid][uid].weightsSetAt, hp[netuid][WEIGHTS_RATE_LIMIT]);
        uint16[] memory up = _checked(netuid, dests, weights, versionKey);
        _store(netuid, uid, dests, up);
        neurons[netuid][uid].weightsSetAt = uint64(block.number + 1);
    }

    function commitWeights(uint16 netuid, bytes32 commitHash) external {
        _subnet(netuid);
        if (hp[netuid][COMMIT_REVEAL] == 0) _fail("commit_reveal_disabled");
        bytes32 hotkey = _caller();
        uint16 uid = _uid(netuid, hotkey);
        _rateLimit(neurons[netuid][uid].weightsSetAt, hp[netuid][WEIGHTS_RATE_LIMIT]);
        Commit[] storage cs = commits[netuid][hotkey];
        uint256 life = hp[netuid][CR_PERIOD] + hp[netuid][CR_WINDOW];
        // Expired commits are dropped here, so the array stays short.
        uint256 i = 0;
        while (i < cs.length) {
            if (uint256(cs[i].block_) + life <= block.number) {
                cs[i] = cs[cs.length - 1];
                cs.pop();
            } else {
                i++;
            }
        }
        if (cs.length >= MAX_COMMITS) _fail("too_many_commits");
        cs.push(Commit(commitHash, uint64(block.number)));
        neurons[netuid][uid].weightsSetAt = uint64(block.number + 1);
        emit WeightsCommitted(netuid, uid, commitHash);
    }

    function revealWeights(uint16 netuid, uint16[] calldata dests, uint16[] calldata weights, bytes calldata salt, uint64 versionKey)
        external
    {
        _subnet(netuid);
        if (hp[netuid][COMMIT_REVEAL] == 0) _fail("commit_reveal_disabled");
        bytes32 hotkey = _caller();
        uint16 uid = _uid(netuid, hotkey);
        if (dests.length != weights.length) _fail("weights_length_mismatch");
        bytes32 digest = weightsCommitHash(hotkey, dests, weights, salt, versionKey);
        Commit[] storage cs = commits[netuid][hotkey];
        if (cs.length == 0) _fail("no_commit");
        uint256 period = hp[netuid][CR_PERIOD];
        uint256 window = hp[netuid][CR_WINDOW];
        // The oldest matching commit decides, as on the embedded chain.
        uint256 best = type(uint256).max;
        for (uint256 i = 0; i < cs.length; i++) {
            if (cs[i].hash == digest && (best == type(uint256).max || cs[i].block_ < cs[best].block_)) {
                if (uint256(cs[i].block_) + period + window > block.number || best == type(uint256).max) best = i;
            }
        }
        if (best == type(uint256).max) _fail("commit_mismatch");
        uint256 opens = uint256(cs[best].block_) + period;
        if (block.number < opens) _fail("reveal_too_early");
        if (block.number >= opens + window) _fail("commit_expired");
        uint16[] memory up = _checked(netuid, dests, weights, versionKey);
        cs[best] = cs[cs.length - 1];
        cs.pop();
        _store(netuid, uid, dests, up);
    }

    /// tnode's commit hash (``tnode.weights.WeightVector.commit_hash``): BLAKE2b-256 over
    /// "tnode-commit-v1\n" ‖ hotkey ‖ count u32 BE ‖ uids u16 BE ‖ weights u16 BE ‖ salt length u32 BE ‖
    /// salt ‖ version_key u64 BE, computed with the BLAKE2 F precompile (EIP-152, address 0x09).
    function weightsCommitHash(bytes32 hotkey, uint16[] calldata dests, uint16[] calldata weights, bytes calldata salt, uint64 versionKey)
        public view returns (bytes32)
    {
        uint256 count = dests.length;
        bytes memory body = new bytes(4 * count);
        for (uint256 i = 0; i < count; i++) {
            body[2 * i] = bytes1(uint8(dests[i] >> 8));
            body[2 * i + 1] = bytes1(uint8(dests[i]));
            body[2 * count + 2 * i] = bytes1(uint8(weights[i] >> 8));
            body[2 * count + 2 * i + 1] = bytes1(uint8(weights[i]));
        }
        bytes memory m = abi.encodePacked(COMMIT_DOMAIN, hotkey, uint32(count), body, uint32(salt.length), salt, versionKey);
        return _blake2b256(m);
    }

    function _blake2b256(bytes memory m) internal view returns (bytes32 out) {
        uint256 len = m.length;
        uint256 blocks = len == 0 ? 1 : (len + 127) / 128;
        bytes memory padded = bytes.concat(m, new bytes(blocks * 128 - len));
        bytes memory h = BLAKE2B_256_IV;
        bytes memory input = new bytes(256);
        for (uint256 b = 0; b < blocks; b++) {
            bool last = b == blocks - 1;
            uint64 t = uint64(last ? len : (b + 1) * 128);
            bytes8 tle = _le64(t);
            bool ok;
            assembly {
                let p := add(input, 32)
                mstore(p, shl(224, 12))
                mstore(add(p, 4), mload(add(h, 32)))
                mstore(add(p, 36), mload(add(h, 64)))
                let src := add(add(padded, 32), mul(b, 128))
                mstore(add(p, 68), mload(src))
                mstore(add(p, 100), mload(add(src, 32)))
                mstore(add(p, 132), mload(add(src, 64)))
                mstore(add(p, 164), mload(add(src, 96)))
                mstore(add(p, 196), tle)
                mstore8(add(p, 212), last)
                ok := staticcall(gas(), 0x09, p, 213, add(h, 32), 64)
            }
            if (!ok) _fail("no_blake2");
        }
        assembly {
            out := mload(add(h, 32))
        }
    }

    // ------------------------------------------------------------------ serving
    /// Publish the node's multiaddrs (newline-separated) and libp2p peer id.
    function publishAddrs(uint16 netuid, string calldata addrs_, string calldata peerId) external {
        _subnet(netuid);
        uint16 uid = _uid(netuid, _caller());
        if (bytes(addrs_).length > 2048 || bytes(peerId).length > 128) _fail("invalid_args");
        _rateLimit(addrsSetAt[netuid][uid], hp[netuid][SERVING_RATE_LIMIT]);
        addrs[netuid][uid] = addrs_;
        peerIds[netuid][uid] = peerId;
        addrsSetAt[netuid][uid] = uint64(block.number + 1);
        emit AddrsPublished(netuid, uid);
    }

    // ------------------------------------------------------------------ epochs
    /// Emission accrued and not yet paid, in wei, as of block ``blockNumber`` (≥ the last posting).
    function pendingEmission(uint16 netuid, uint256 blockNumber) public view returns (uint256) {
        Subnet storage s = subnets_[netuid];
        uint256 accrued = s.pending + hp[netuid][BLOCK_EMISSION] * (blockNumber - s.lastAccrual);
        uint256 cap = hp[netuid][MAX_SUPPLY];
        uint256 room = cap > issued ? cap - issued : 0;
        return accrued < room ? accrued : room;
    }

    /// The keeper posts the emission of epoch block ``epochBlock`` (base units per uid, as every node
    /// computes it with Yuma from this contract's state at that block), in chunks of consecutive uids
    /// starting at 0: one transaction per chunk, so thousands of uids fit under a block gas limit.
    /// Each chunk is credited to the owners' stake at once; uids after the ``last`` chunk earn 0.
    /// The commitment is the chained hash h = keccak256(h ‖ abi.encodePacked(chunk)), from h = 0;
    /// the last chunk closes the epoch and emits it with EpochPosted, with the emission that had
    /// accrued (``pending``, fixed at the first chunk: the amount every node splits with Yuma's
    /// shares). Nodes that compute something else raise an alarm and may dispute.
    function postEpochChunk(uint16 netuid, uint64 epochBlock, uint16 start, uint64[] calldata emission, bool last)
        external
    {
        Subnet storage s = _subnet(netuid);
        if (msg.sender != keeper) _fail("not_keeper");
        Posting storage p = epochPosting[netuid];
        if (p.epochBlock == 0) {
            uint256 tempo = hp[netuid][TEMPO];
            if (start != 0 || epochBlock % tempo != 0 || epochBlock <= s.lastEpochBlock || epochBlock >= block.number) {
                _fail("invalid_epoch");
            }
            p.epochBlock = epochBlock;
            p.n = s.n;
            p.pending = pendingEmission(netuid, epochBlock);
        } else if (epochBlock != p.epochBlock || start != p.next) {
            _fail("invalid_epoch");
        }
        if (uint256(start) + emission.length > p.n) _fail("invalid_args");
        uint256 paid = 0;
        for (uint256 i = 0; i < emission.length; i++) {
            uint16 u = uint16(start + i);
            uint256 e = uint256(emission[i]) * WEI_PER_UNIT;
            paid += e;
            neurons[netuid][u].emission = emission[i];
            if (e == 0) continue;
            bytes32 hk = hotkeyOf[netuid][u];
            bytes32 ck = hotkeyOwner[hk];
            stakeOf[ck][hk] += e;
            totalStake[hk] += e;
        }
        p.paid += paid;
        if (p.paid > p.pending) _fail("emission_exceeded");
        if (paid > reserve) _fail("reserve_exhausted");
        reserve -= paid;
        issued += paid;
        p.digest = keccak256(abi.encodePacked(p.digest, emission));
        p.next = uint16(start + emission.length);
        emit EpochChunkPosted(netuid, epochBlock, start, uint16(emission.length));
        if (!last) return;
        for (uint16 u = p.next; u < p.n; u++) neurons[netuid][u].emission = 0;
        s.pending = p.pending - p.paid;
        s.lastAccrual = epochBlock;
        s.lastEpochBlock = epochBlock;
        epochEmissionHash[netuid][epochBlock] = p.digest;
        emit EpochPosted(netuid, epochBlock, p.digest, p.paid, p.pending, msg.sender);
        delete epochPosting[netuid];
    }

    /// A registered node records on-chain that it computed another emission for an epoch.
    function disputeEpoch(uint16 netuid, uint64 epochBlock, bytes32 expectedHash) external {
        bytes32 key = _caller();
        _uid(netuid, key);
        if (epochEmissionHash[netuid][epochBlock] == bytes32(0)) _fail("invalid_epoch");
        emit EpochDisputed(netuid, epochBlock, key, expectedHash);
    }

    // ------------------------------------------------------------------ reads
    function subnets() external view returns (uint16[] memory ids, string[] memory modalities) {
        ids = netuids;
        modalities = new string[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) modalities[i] = subnets_[ids[i]].modality;
    }

    function hyperparameters(uint16 netuid) external view returns (uint256[HP_COUNT] memory) {
        _subnet(netuid);
        return hp[netuid];
    }

    /// n, current difficulty, current burn (wei), last posted epoch block, pending emission (wei).
    function subnetState(uint16 netuid)
        external view returns (uint16 n, uint256 difficulty_, uint256 burn, uint64 lastEpochBlock, uint256 pending)
    {
        Subnet storage s = _subnet(netuid);
        (difficulty_, burn,,) = _adjusted(netuid, block.number + 1);
        return (s.n, difficulty_, burn, s.lastEpochBlock, pendingEmission(netuid, block.number));
    }

    /// Neurons ``start`` .. ``start + count - 1`` (clipped to n).
    function neuronsPage(uint16 netuid, uint16 start, uint16 count)
        external view
        returns (bytes32[] memory hotkeys, bytes32[] memory coldkeys, uint256[] memory stakes, uint64[4][] memory info)
    {
        Subnet storage s = _subnet(netuid);
        uint256 end = uint256(start) + count;
        if (end > s.n) end = s.n;
        uint256 len = end > start ? end - start : 0;
        hotkeys = new bytes32[](len);
        coldkeys = new bytes32[](len);
        stakes = new uint256[](len);
        info = new uint64[4][](len);
        for (uint256 i = 0; i < len; i++) {
            uint16 u = uint16(start + i);
            bytes32 hk = hotkeyOf[netuid][u];
            Neuron storage nr = neurons[netuid][u];
            hotkeys[i] = hk;
            coldkeys[i] = hotkeyOwner[hk];
            stakes[i] = totalStake[hk];
            info[i] = [nr.registeredAt, nr.lastUpdate, nr.emission, nr.weightsSetAt];
        }
    }

    function weightsOf(uint16 netuid, uint16 uid) external view returns (uint16[] memory dests, uint16[] memory values) {
        return (weightUids[netuid][uid], weightValues[netuid][uid]);
    }

    function addrsOf(uint16 netuid, uint16 uid) external view returns (string memory, string memory) {
        return (addrs[netuid][uid], peerIds[netuid][uid]);
    }

    function commitsOf(uint16 netuid, bytes32 hotkey) external view returns (Commit[] memory) {
        return commits[netuid][hotkey];
    }
}
