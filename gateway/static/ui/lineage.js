// The console's lineage explorer: draws the graph around a node with Cytoscape.js (layered,
// versions on the edges, models as diamonds); a click expands a node, a double-click centres
// the explorer on it. Labels are set as data, never as markup.
(function () {
  "use strict";
  const box = document.getElementById("graph");
  if (!box || typeof cytoscape === "undefined") return;
  const source = box.dataset.source;

  function fetchGraph(node, depth) {
    const url = source + "?node=" + encodeURIComponent(node) + "&depth=" + depth;
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : { nodes: [], edges: [] };
    });
  }

  function elements(graph) {
    const out = [];
    graph.nodes.forEach(function (n) {
      out.push({ group: "nodes", data: { id: n.id, label: n.label, kind: n.kind, start: n.start } });
    });
    graph.edges.forEach(function (e) {
      out.push({
        group: "edges",
        data: {
          id: e.source + "->" + e.target,
          source: e.source,
          target: e.target,
          label: e.versions.length ? "v" + e.versions.join(", v") : "",
        },
      });
    });
    return out;
  }

  const cy = cytoscape({
    container: box,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 11, "background-color": "#0b4f9c", color: "#1a1a1a", "text-valign": "bottom", "text-margin-y": 4 } },
      { selector: "node[kind = 'job']", style: { shape: "round-rectangle", "background-color": "#6b6b6b" } },
      { selector: "node[kind = 'model']", style: { shape: "diamond", "background-color": "#8a4b00" } },
      { selector: "node[?start]", style: { "border-width": 3, "border-color": "#f2a900" } },
      { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", width: 1.5, label: "data(label)", "font-size": 9, "text-background-color": "#ffffff", "text-background-opacity": 1 } },
    ],
  });

  box.explorer = cy; // reachable for browser tests (and the devtools)

  function add(graph) {
    const fresh = elements(graph).filter(function (el) {
      return cy.getElementById(el.data.id).empty();
    });
    cy.add(fresh);
    cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 1.2 }).run();
  }

  fetchGraph(box.dataset.node, box.dataset.depth).then(add);
  cy.on("tap", "node", function (event) {
    fetchGraph(event.target.id(), 1).then(add);
  });
  cy.on("dbltap", "node", function (event) {
    window.location.assign("/ui/lineage?node=" + encodeURIComponent(event.target.id()) + "&depth=" + box.dataset.depth);
  });
})();
