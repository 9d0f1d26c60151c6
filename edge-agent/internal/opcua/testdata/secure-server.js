// An independent OPC UA server (node-opcua) with the signing and encrypting
// security policies and username authentication, for secure_test.go:
//   node secure-server.js PORT PKI_DIR
// It prints "READY <endpoint>" once listening. Client certificates are accepted
// automatically; the server's own certificate is made in PKI_DIR on first start.
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType } = require("node-opcua-variant");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { SecurityPolicy } = require("node-opcua-secure-channel");
const { MessageSecurityMode } = require("node-opcua-service-secure-channel");

const port = parseInt(process.argv[2], 10);
const pki = process.argv[3];

(async () => {
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: pki,
    automaticallyAcceptUnknownCertificate: true,
  });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    serverCertificateManager,
    securityPolicies: [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss],
    securityModes: [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: false,
    userManager: { isValidUser: (user, password) => user === "takt" && password === "secret" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  let speed = 0;
  ns.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Speed",
    nodeId: "s=Speed",
    dataType: "Double",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: speed }) },
  });
  setInterval(() => { speed += 1; }, 50);
  await server.start();
  console.log("READY " + server.getEndpointUrl());
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
