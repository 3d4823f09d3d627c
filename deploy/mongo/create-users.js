// One MongoDB user per service that keeps state (binder, relay), each allowed to read and write
// the bridge's database only. Run by the mongo image on first start (an empty data volume), as
// root; for an existing volume run it once by hand (docs/operations.md, "Credentials"):
//   docker compose -f deploy/compose.yaml exec mongo sh -c \
//     'mongosh -u root -p "$MONGO_INITDB_ROOT_PASSWORD" /docker-entrypoint-initdb.d/create-users.js'
const database = process.env.MONGODB_DATABASE || "planfix_bridge";
const admin = db.getSiblingDB("admin");
for (const [user, variable] of [["binder", "BINDER_MONGODB_PASSWORD"], ["relay", "RELAY_MONGODB_PASSWORD"]]) {
  const password = process.env[variable];
  if (!password) {
    throw new Error(`${variable} is not set: every service user needs its password`);
  }
  const roles = [{ role: "readWrite", db: database }];
  if (admin.getUser(user)) {
    admin.updateUser(user, { pwd: password, roles });
  } else {
    admin.createUser({ user, pwd: password, roles });
  }
}
